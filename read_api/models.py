"""Response bodies of the read API (what clients see; never a domain object)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field


class ListingSummaryPublic(BaseModel):
    """A listing as a search hit or a "similar" neighbour."""

    listing_id: UUID
    title: str
    description: str | None = None
    category: str | None = None
    kind: str | None = None
    status: str | None = None
    price_amount: int | None = Field(None, description="minor units of `currency`")
    currency: str | None = None
    condition_score: float | None = None
    seller_id: UUID | None = None
    created_at: datetime | None = None
    score: float | None = Field(None, description="relevance: BM25 (keyword), cosine (semantic) or RRF (hybrid)")


class ListingPublic(BaseModel):
    """Everything a listing detail page shows, with the seller's trust score."""

    listing_id: UUID
    seller_id: UUID
    kind: str
    title: str
    description: str
    category: str
    price_amount: int
    currency: str
    status: str
    attributes: dict[str, Any]
    creator_id: UUID | None
    royalty_bps: int
    condition_score: float | None
    model_id: str | None
    model_version: str | None
    image_hashes: list[str]
    boosted_until: datetime | None
    suspended_reason: str | None
    sold_order_id: UUID | None
    created_at: datetime
    updated_at: datetime
    version: int
    position: int
    seller_trust_score: int | None = Field(None, description="rm_trust score of the seller, if any")


class FacetBucketPublic(BaseModel):
    """One value of a keyword facet and how many hits carry it."""

    value: str
    count: int


class PriceBucketPublic(BaseModel):
    """One price band [from_amount, to_amount) in minor units and its hit count."""

    from_amount: int | None
    to_amount: int | None
    count: int


class FacetsPublic(BaseModel):
    """Counts over every hit of the query (all pages), filters applied."""

    category: list[FacetBucketPublic]
    kind: list[FacetBucketPublic]
    currency: list[FacetBucketPublic]
    price: list[PriceBucketPublic]


class CoveragePublic(BaseModel):
    """How much of the published catalogue semantic search can see (listings with an embedding)."""

    published: int = Field(description="published listings")
    enriched: int = Field(description="published listings with an embedding: semantic search finds these")
    not_enriched: int = Field(description="published listings not yet enriched: semantic search cannot find them")
    ratio: float = Field(description="enriched / published (0 when nothing is published)")


class SearchResultsPublic(BaseModel):
    """One page of search results."""

    mode: Literal["keyword", "semantic", "hybrid"]
    total: int = Field(description="keyword: all matching hits; semantic/hybrid: the ranked candidates")
    page: int
    size: int
    items: list[ListingSummaryPublic]
    facets: FacetsPublic | None = Field(None, description="keyword facets (absent in semantic mode)")
    coverage: CoveragePublic | None = Field(None, description="semantic and hybrid: enriched vs not yet enriched")


class SimilarListingsPublic(BaseModel):
    """Nearest published neighbours of a listing's embedding (empty when it has none)."""

    listing_id: UUID
    items: list[ListingSummaryPublic]


class OrderPublic(BaseModel):
    """An order with its escrow state."""

    order_id: UUID
    buyer_id: UUID
    seller_id: UUID
    listing_id: UUID
    price_amount: int
    currency: str
    fee_amount: int
    royalty_amount: int
    seller_amount: int
    status: str
    escrow: str
    dispute_reason: str | None
    resolution: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    position: int


class WalletBalancePublic(BaseModel):
    """The balance of one wallet (one currency)."""

    wallet_id: UUID
    currency: str
    available: int
    held: int
    updated_at: datetime
    version: int
    position: int


class WalletsPublic(BaseModel):
    """All wallets of a user, one per currency."""

    user_id: UUID
    balances: list[WalletBalancePublic]


class DashboardCurrencyPublic(BaseModel):
    """A seller's figures in one currency."""

    currency: str
    listings_total: int
    listings_published: int
    orders_total: int
    orders_completed: int
    orders_refunded: int
    revenue_amount: int
    fees_amount: int
    conversion: float
    updated_at: datetime


class SellerDashboardPublic(BaseModel):
    """A seller's dashboard, one row per currency."""

    seller_id: UUID
    currencies: list[DashboardCurrencyPublic]


class CurrencyRevenuePublic(BaseModel):
    """The platform's money in one currency, from the orders read model (minor units)."""

    currency: str
    fees_amount: int = Field(description="platform fees of released orders: what the fee wallet was credited")
    royalties_paid_amount: int = Field(description="creator royalties paid out by released orders")
    escrow_held_amount: int = Field(description="buyers' money held in escrow now (orders not yet settled)")
    sales_released_amount: int = Field(description="gross price of released orders")
    refunded_amount: int = Field(description="price of orders refunded to their buyers")
    orders_released: int
    orders_in_escrow: int
    orders_refunded: int
    updated_at: datetime = Field(description="time of the latest order event counted")


class PlatformRevenuePublic(BaseModel):
    """Platform revenue and escrow, one row per currency that has orders."""

    currencies: list[CurrencyRevenuePublic]


class LicenceCheckPublic(BaseModel):
    """Whether the licence may be used now, why, and what is left."""

    licence_id: UUID
    listing_id: UUID
    licensee_id: UUID
    kind: str
    status: str
    allowed: bool
    reason: Literal["ok", "revoked", "expired", "quota_exhausted"]
    remaining: int | None = Field(description="units left on a metered licence; null when not metered")
    expires_at: datetime | None
    checked_at: datetime


class TrustPublic(BaseModel):
    """A user's public trust score."""

    user_id: UUID
    score: int
    formula_version: int
    signals: int
    updated_at: datetime


class ErrorDetailPublic(BaseModel):
    """A machine-readable code, a message for people, and details."""

    code: str
    message: str
    details: Any = None


class ErrorPublic(BaseModel):
    """Every 4xx and 5xx body."""

    error: ErrorDetailPublic
