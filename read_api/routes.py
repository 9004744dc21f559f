"""The read routes (/v1): each checks the caller, waits for `?after=`, runs one query."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from infra.tokens import require_owner_or_admin
from read_api.deps import Caller, Context, MaybeCaller, Read
from read_api.errors import Forbidden, NotFound
from read_api.models import (
    LicenceCheckPublic,
    ListingPublic,
    OrderPublic,
    PlatformRevenuePublic,
    SearchResultsPublic,
    SellerDashboardPublic,
    SimilarListingsPublic,
    TrustPublic,
    WalletsPublic,
)
from read_api.openapi import OPTIONAL_AUTH, error_responses
from read_api.queries import (
    licence_check,
    listing_detail,
    order_view,
    platform_revenue,
    seller_dashboard,
    similar_listings,
    trust_score,
    wallet_balances,
)
from read_api.search import SearchParams, projections_for

router = APIRouter(prefix="/v1")


@router.get("/listings/search", tags=["listings"], responses=error_responses())
def search_listings(
    context: Context, read: Read, params: Annotated[SearchParams, Query()]
) -> SearchResultsPublic:
    """Search published listings by keyword (typo-tolerant), meaning (semantic) or both (hybrid), with facets."""
    read.catch_up(*projections_for(params.mode))
    return context.search.run(read.conn, params)


@router.get("/listings/{listing_id}", tags=["listings"], responses=error_responses(401, 404),
            openapi_extra=OPTIONAL_AUTH)
def get_listing(listing_id: UUID, caller: MaybeCaller, read: Read) -> ListingPublic:
    """A listing's detail page; drafts, suspended and withdrawn listings are shown to their seller and admins only."""
    read.catch_up("listings")
    listing = listing_detail.get_listing(read.conn, listing_id)
    if listing is None or not listing_detail.visible_to(
        listing, caller.user_id if caller else None, bool(caller and caller.is_admin)
    ):
        raise NotFound(f"no listing {listing_id}")
    return listing


@router.get("/listings/{listing_id}/similar", tags=["listings"], responses=error_responses(401, 404),
            openapi_extra=OPTIONAL_AUTH)
def get_similar_listings(
    listing_id: UUID, caller: MaybeCaller, read: Read,
    limit: Annotated[int, Query(ge=1, le=50, description="how many neighbours")] = 10,
) -> SimilarListingsPublic:
    """Published listings nearest to this listing's embedding; empty when it has no embedding yet."""
    read.catch_up("listings", "vectors")
    listing = listing_detail.get_listing(read.conn, listing_id)
    if listing is None or not listing_detail.visible_to(
        listing, caller.user_id if caller else None, bool(caller and caller.is_admin)
    ):
        raise NotFound(f"no listing {listing_id}")
    items = similar_listings.similar_listings(read.conn, listing_id, limit)
    return SimilarListingsPublic(listing_id=listing_id, items=items)


@router.get("/orders/{order_id}", tags=["orders"], responses=error_responses(401, 403, 404))
def get_order(order_id: UUID, caller: Caller, read: Read) -> OrderPublic:
    """An order with its escrow state, for its buyer, its seller and admins."""
    read.catch_up("orders")
    order = order_view.get_order(read.conn, order_id)
    if order is None:
        raise NotFound(f"no order {order_id}")
    require_owner_or_admin(caller, order.buyer_id, order.seller_id, message="only its parties and admins read an order")
    return order


@router.get("/wallets/{user_id}", tags=["wallets"], responses=error_responses(401, 403, 404))
def get_wallets(user_id: UUID, caller: Caller, read: Read) -> WalletsPublic:
    """A user's wallet balances in every currency, for that user and admins."""
    require_owner_or_admin(caller, user_id, message="only the wallet owner and admins may read balances")
    read.catch_up("wallets")
    balances = wallet_balances.wallet_balances(read.conn, user_id)
    if not balances:
        raise NotFound(f"no wallet for user {user_id}")
    return WalletsPublic(user_id=user_id, balances=balances)


@router.get("/sellers/{seller_id}/dashboard", tags=["sellers"], responses=error_responses(401, 403, 404))
def get_seller_dashboard(seller_id: UUID, caller: Caller, read: Read) -> SellerDashboardPublic:
    """A seller's listings, orders, revenue, fees and conversion per currency, for that seller and admins."""
    require_owner_or_admin(caller, seller_id, message="only the seller and admins may read a dashboard")
    read.catch_up("dashboard")
    currencies = seller_dashboard.seller_dashboard(read.conn, seller_id)
    if not currencies:
        raise NotFound(f"no dashboard for seller {seller_id}")
    return SellerDashboardPublic(seller_id=seller_id, currencies=currencies)


@router.get("/licences/{licence_id}/check", tags=["licences"], responses=error_responses(401, 403, 404))
def check_licence(licence_id: UUID, caller: Caller, read: Read) -> LicenceCheckPublic:
    """May the licence be used now (ok, revoked, expired, quota_exhausted)? For licensee, seller and admins."""
    read.catch_up("licences")
    licence = licence_check.find_licence(read.conn, licence_id)
    if licence is None:
        raise NotFound(f"no licence {licence_id}")
    if not licence_check.may_check(licence, caller.user_id, caller.is_admin):
        raise Forbidden("only the licensee, the listing's seller and admins may check a licence")
    return licence_check.check_licence(licence, datetime.now(UTC))


@router.get("/users/{user_id}/trust", tags=["users"], responses=error_responses(404))
def get_trust(user_id: UUID, read: Read) -> TrustPublic:
    """A user's public trust score."""
    read.catch_up("trust")
    trust = trust_score.trust_score(read.conn, user_id)
    if trust is None:
        raise NotFound(f"no trust score for user {user_id}")
    return trust


@router.get("/platform/revenue", tags=["platform"], responses=error_responses(401, 403))
def get_platform_revenue(caller: Caller, read: Read) -> PlatformRevenuePublic:
    """The platform's fees, royalties paid out and escrow held, per currency, for admins."""
    if not caller.is_admin:
        raise Forbidden("only admins may read the platform's revenue")
    read.catch_up("orders")
    return PlatformRevenuePublic(currencies=platform_revenue.platform_revenue(read.conn))
