"""Schemas of Listing events and commands."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, JsonValue, field_validator, model_validator

from schemas import rules
from schemas.base import (
    BasisPoints,
    Category,
    CommandSchema,
    CreatedEventSchema,
    Currency,
    Description,
    EventSchema,
    MinorUnits,
    MoneyIn,
    Reason,
    ShortText,
    Title,
)

ListingKindName = Literal["ai_model", "dataset", "goods"]
MAX_ATTRIBUTES = 50


class _ListingEvent(EventSchema):
    aggregate: ClassVar[str] = "listing"


class ListingDraftedV1(CreatedEventSchema):
    """Version 1 of ListingDrafted, before listings had free-form attributes."""

    schema_name: ClassVar[str] = "ListingDrafted"
    schema_version: ClassVar[int] = 1
    event_type: ClassVar[str] = "Listing.Drafted"
    aggregate: ClassVar[str] = "listing"

    seller_id: UUID
    kind: ListingKindName
    title: str
    description: str
    category: str
    price_amount: MinorUnits
    currency: Currency
    creator_id: UUID | None
    royalty_bps: BasisPoints


class ListingDrafted(ListingDraftedV1):
    """A seller drafted a listing."""

    schema_version: ClassVar[int] = 2

    attributes: dict[str, Any]


class ListingRevised(_ListingEvent):
    """The seller revised texts or attributes (full new values)."""

    schema_name: ClassVar[str] = "ListingRevised"
    event_type: ClassVar[str] = "Listing.Revised"

    title: str
    description: str
    category: str
    attributes: dict[str, Any]


class ListingPublished(_ListingEvent):
    """The listing went on sale."""

    schema_name: ClassVar[str] = "ListingPublished"
    event_type: ClassVar[str] = "Listing.Published"


class ListingPriceChanged(_ListingEvent):
    """The price changed (previous amount kept for analytics)."""

    schema_name: ClassVar[str] = "ListingPriceChanged"
    event_type: ClassVar[str] = "Listing.PriceChanged"

    previous_amount: MinorUnits
    price_amount: MinorUnits
    currency: Currency


class ListingEnriched(_ListingEvent):
    """Machine enrichment arrived for the listing."""

    schema_name: ClassVar[str] = "ListingEnriched"
    event_type: ClassVar[str] = "Listing.Enriched"

    embedding_ref: str | None
    condition_score: float | None
    image_hashes: list[str]
    model_id: str
    model_version: str
    # Added with the enrichment worker; events recorded before it decode with None.
    quality_score: float | None = None


class ListingBoosted(_ListingEvent):
    """The listing is promoted until a time."""

    schema_name: ClassVar[str] = "ListingBoosted"
    event_type: ClassVar[str] = "Listing.Boosted"

    until: AwareDatetime
    source: str


class ListingAutoBoostEnabled(_ListingEvent):
    """The seller let the auto-boost agent promote the listing."""

    schema_name: ClassVar[str] = "ListingAutoBoostEnabled"
    event_type: ClassVar[str] = "Listing.AutoBoostEnabled"


class ListingAutoBoostDisabled(_ListingEvent):
    """The seller withdrew the auto-boost agent's permission."""

    schema_name: ClassVar[str] = "ListingAutoBoostDisabled"
    event_type: ClassVar[str] = "Listing.AutoBoostDisabled"


class ListingSuspended(_ListingEvent):
    """The listing was suspended (suspected fraud)."""

    schema_name: ClassVar[str] = "ListingSuspended"
    event_type: ClassVar[str] = "Listing.Suspended"

    reason: str


class ListingReinstated(_ListingEvent):
    """A suspension was lifted."""

    schema_name: ClassVar[str] = "ListingReinstated"
    event_type: ClassVar[str] = "Listing.Reinstated"


class ListingSold(_ListingEvent):
    """The item was sold through an order."""

    schema_name: ClassVar[str] = "ListingSold"
    event_type: ClassVar[str] = "Listing.Sold"

    order_id: UUID


class ListingRelisted(_ListingEvent):
    """The order that bought the item was refunded; the item is on sale again."""

    schema_name: ClassVar[str] = "ListingRelisted"
    event_type: ClassVar[str] = "Listing.Relisted"

    order_id: UUID


class ListingWithdrawn(_ListingEvent):
    """The seller withdrew the listing."""

    schema_name: ClassVar[str] = "ListingWithdrawn"
    event_type: ClassVar[str] = "Listing.Withdrawn"


def _check_attributes(value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
    if value is not None and len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
    return value


class DraftListing(CommandSchema):
    """Draft a new listing (the seller is the authenticated user)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"properties": {"royalty_bps": {"maximum": 0}}}, rules.given("creator_id")]})
    schema_name: ClassVar[str] = "DraftListing"

    kind: ListingKindName
    title: Title
    description: Description = ""
    category: Category
    price: MoneyIn
    attributes: dict[str, JsonValue] = Field(default_factory=dict)
    creator_id: UUID | None = None
    royalty_bps: BasisPoints = 0

    _attributes = field_validator("attributes")(_check_attributes)

    @model_validator(mode="after")
    def _royalty_needs_creator(self) -> DraftListing:
        if self.royalty_bps > 0 and self.creator_id is None:
            raise ValueError("royalty_bps > 0 needs a creator_id")
        return self


class ReviseListing(CommandSchema):
    """Change a listing's texts or attributes; omitted fields stay as they are."""

    model_config = ConfigDict(json_schema_extra=rules.at_least_one("title", "description", "category", "attributes"))
    schema_name: ClassVar[str] = "ReviseListing"

    listing_id: UUID
    title: Title | None = None
    description: Description | None = None
    category: Category | None = None
    attributes: dict[str, JsonValue] | None = None

    _attributes = field_validator("attributes")(_check_attributes)

    @model_validator(mode="after")
    def _something_changes(self) -> ReviseListing:
        if all(v is None for v in (self.title, self.description, self.category, self.attributes)):
            raise ValueError("give at least one of title, description, category, attributes")
        return self


class PublishListing(CommandSchema):
    """Put a draft listing on sale."""

    schema_name: ClassVar[str] = "PublishListing"

    listing_id: UUID


class ChangeListingPrice(CommandSchema):
    """Set a new price (same currency)."""

    schema_name: ClassVar[str] = "ChangeListingPrice"

    listing_id: UUID
    price: MoneyIn


class EnrichListing(CommandSchema):
    """Record machine enrichment of a listing (sent by GPU workers)."""

    schema_name: ClassVar[str] = "EnrichListing"

    listing_id: UUID
    model_id: ShortText
    model_version: ShortText
    embedding_ref: ShortText | None = None
    condition_score: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    image_hashes: list[ShortText] = Field(default_factory=list, max_length=50)
    quality_score: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)


class BoostListing(CommandSchema):
    """Promote a published listing until a time."""

    schema_name: ClassVar[str] = "BoostListing"

    listing_id: UUID
    until: AwareDatetime
    source: Literal["auto", "paid"]


class SetAutoBoost(CommandSchema):
    """Let the auto-boost agent promote the listing when it outperforms its category (or stop it)."""

    schema_name: ClassVar[str] = "SetAutoBoost"

    listing_id: UUID
    enabled: bool


class SuspendListing(CommandSchema):
    """Suspend a listing for fraud review (trust and safety)."""

    schema_name: ClassVar[str] = "SuspendListing"

    listing_id: UUID
    reason: Reason


class ReinstateListing(CommandSchema):
    """Lift a listing's suspension."""

    schema_name: ClassVar[str] = "ReinstateListing"

    listing_id: UUID


class WithdrawListing(CommandSchema):
    """Withdraw a listing."""

    schema_name: ClassVar[str] = "WithdrawListing"

    listing_id: UUID


EVENTS: tuple[type[EventSchema], ...] = (
    ListingDraftedV1, ListingDrafted, ListingRevised, ListingPublished, ListingPriceChanged, ListingEnriched,
    ListingBoosted, ListingSuspended, ListingReinstated, ListingSold, ListingRelisted, ListingWithdrawn,
    ListingAutoBoostEnabled, ListingAutoBoostDisabled,
)
COMMANDS: tuple[type[CommandSchema], ...] = (
    DraftListing, ReviseListing, PublishListing, ChangeListingPrice, EnrichListing, BoostListing,
    SuspendListing, ReinstateListing, WithdrawListing, SetAutoBoost,
)
