"""Listing: what a seller offers (an AI model, a dataset or a physical good) and its life cycle.

States: draft -> published -> sold (-> published again when its order is refunded: relisted);
draft|published -> suspended (fraud) -> published (reinstated); any but sold -> withdrawn.
Events store money as `price_amount` (minor units) + `currency` so that every stored event decodes
with the event store's default transcoder and hashes canonically.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.chain import ChainedAggregate, canonical_json
from domain.errors import DomainError, NotPartyError, check_aware
from domain.money import Money, check_bps


class ListingKind(StrEnum):
    """What is being sold."""

    AI_MODEL = "ai_model"
    DATASET = "dataset"
    GOODS = "goods"


class ListingStatus(StrEnum):
    """Where a listing is in its life cycle."""

    DRAFT = "draft"
    PUBLISHED = "published"
    SUSPENDED = "suspended"
    SOLD = "sold"
    WITHDRAWN = "withdrawn"


class ListingError(DomainError):
    """A listing rule was broken."""

    code = "listing.error"


class ListingNotPublishedError(ListingError):
    """The listing is not published."""

    code = "listing.not_published"


class ListingSoldError(ListingNotPublishedError):
    """The listing was sold: it is not on sale any more (a second buyer is told so, not "not published")."""

    code = "listing.sold"


class ListingNotEditableError(ListingError):
    """The listing can no longer be changed (sold, withdrawn or suspended)."""

    code = "listing.not_editable"


class ListingNotDraftError(ListingError):
    """Only a draft can be published."""

    code = "listing.not_draft"


class ListingNotSuspendedError(ListingError):
    """Only a suspended listing can be reinstated."""

    code = "listing.not_suspended"


class ListingNotSoldError(ListingError):
    """Only a sold listing can be relisted."""

    code = "listing.not_sold"


class ListingClosedError(ListingError):
    """The listing is sold or withdrawn."""

    code = "listing.closed"


class InvalidListingError(ListingError):
    """A listing field is malformed."""

    code = "listing.invalid"


class ListingCurrencyChangeError(ListingError):
    """A listing's currency is fixed when it is drafted."""

    code = "listing.currency_change"


class AutoBoostOffError(ListingError):
    """An automatic boost needs the seller to have enabled auto-boost on the listing."""

    code = "listing.auto_boost_off"


class NotListingOwnerError(NotPartyError):
    """Only the listing's seller may do this."""

    code = "listing.not_owner"


_EDITABLE = {ListingStatus.DRAFT, ListingStatus.PUBLISHED}
_CLOSED = {ListingStatus.SOLD, ListingStatus.WITHDRAWN}


def check_attributes(attributes: dict[str, Any]) -> None:
    """Attributes must be a JSON object of plain values (they are hashed and published)."""
    try:
        canonical_json(attributes)
    except (TypeError, ValueError) as exc:
        raise InvalidListingError(f"attributes are not plain JSON: {exc}") from exc


def check_royalty(creator_id: UUID | None, royalty_bps: int) -> None:
    """A royalty needs a creator; bps must be within 0..10000."""
    check_bps(royalty_bps)
    if royalty_bps > 0 and creator_id is None:
        raise InvalidListingError("a royalty needs a creator_id")


class Listing(ChainedAggregate):
    """An item offered for sale or licence by a seller."""

    class Event(ChainedAggregate.Event):
        """Base class of listing events."""

    class Drafted(Event, ChainedAggregate.Created):
        """A seller drafted a listing."""

        seller_id: UUID
        kind: str
        title: str
        description: str
        category: str
        price_amount: int
        currency: str
        attributes: dict[str, Any]
        creator_id: UUID | None
        royalty_bps: int

    def __init__(self, seller_id: UUID, kind: str, title: str, description: str, category: str,
                 price_amount: int, currency: str, attributes: dict[str, Any], creator_id: UUID | None,
                 royalty_bps: int) -> None:
        self.seller_id = seller_id
        self.kind = ListingKind(kind)
        self.title = title
        self.description = description
        self.category = category
        self.price = Money(price_amount, currency)
        self.attributes = dict(attributes)
        self.creator_id = creator_id
        self.royalty_bps = royalty_bps
        self.status = ListingStatus.DRAFT
        self.enrichment: dict[str, Any] | None = None
        self.boosted_until: datetime | None = None
        self.auto_boost = False
        self.suspension_reason: str | None = None
        self.sold_order_id: UUID | None = None

    @classmethod
    def draft(cls, *, listing_id: UUID, seller_id: UUID, kind: ListingKind | str, title: str,
              description: str, category: str, price: Money, now: datetime,
              attributes: dict[str, Any] | None = None, creator_id: UUID | None = None,
              royalty_bps: int = 0) -> Listing:
        """Draft a new listing."""
        check_aware(now)
        try:
            kind = ListingKind(kind)
        except ValueError as exc:
            raise InvalidListingError(f"unknown listing kind {kind!r}") from exc
        attributes = dict(attributes or {})
        check_attributes(attributes)
        check_royalty(creator_id, royalty_bps)
        return cls._create_chained(
            cls.Drafted, listing_id, now, seller_id=seller_id, kind=kind.value, title=title,
            description=description, category=category, price_amount=price.amount,
            currency=price.currency, attributes=attributes, creator_id=creator_id, royalty_bps=royalty_bps,
        )

    # Guards ------------------------------------------------------------------------------------------

    def check_owner(self, user_id: UUID) -> None:
        """Only the seller may manage the listing."""
        if user_id != self.seller_id:
            raise NotListingOwnerError(listing_id=self.id, user_id=user_id)

    def check_editable(self) -> None:
        """Drafts and published listings can change; others cannot."""
        if self.status not in _EDITABLE:
            raise ListingNotEditableError(listing_id=self.id, status=self.status)

    def check_published(self) -> None:
        """The listing must be on sale."""
        if self.status == ListingStatus.SOLD:
            raise ListingSoldError(listing_id=self.id, status=self.status)
        if self.status != ListingStatus.PUBLISHED:
            raise ListingNotPublishedError(listing_id=self.id, status=self.status)

    def check_can_be_ordered(self, currency: str) -> None:
        """A buyer can order only a published listing, in its currency."""
        self.check_published()
        if currency != self.price.currency:
            raise ListingCurrencyChangeError(f"listing is priced in {self.price.currency}")

    def check_auto_boost_enabled(self) -> None:
        """The auto-boost agent may boost only listings whose seller enabled it."""
        if not self.auto_boost:
            raise AutoBoostOffError(listing_id=self.id)

    def check_open(self) -> None:
        """Sold and withdrawn listings are closed for good."""
        if self.status in _CLOSED:
            raise ListingClosedError(listing_id=self.id, status=self.status)

    # Commands ----------------------------------------------------------------------------------------

    class Revised(Event):
        """The seller revised the listing's texts or attributes (full new values)."""

        title: str
        description: str
        category: str
        attributes: dict[str, Any]

        def apply(self, aggregate: Listing) -> None:
            aggregate.title = self.title
            aggregate.description = self.description
            aggregate.category = self.category
            aggregate.attributes = dict(self.attributes)

    def revise(self, *, now: datetime, title: str | None = None, description: str | None = None,
               category: str | None = None, attributes: dict[str, Any] | None = None) -> None:
        """Change texts or attributes; omitted fields keep their value."""
        check_aware(now)
        self.check_editable()
        new_attributes = dict(self.attributes if attributes is None else attributes)
        check_attributes(new_attributes)
        self._trigger(
            self.Revised, now, title=self.title if title is None else title,
            description=self.description if description is None else description,
            category=self.category if category is None else category, attributes=new_attributes,
        )

    class Published(Event):
        """The listing went on sale."""

        def apply(self, aggregate: Listing) -> None:
            aggregate.status = ListingStatus.PUBLISHED

    def publish(self, *, now: datetime) -> None:
        """Put a draft on sale."""
        check_aware(now)
        if self.status != ListingStatus.DRAFT:
            raise ListingNotDraftError(listing_id=self.id, status=self.status)
        self._trigger(self.Published, now)

    class PriceChanged(Event):
        """The seller changed the price (previous amount kept for price analytics)."""

        previous_amount: int
        price_amount: int
        currency: str

        def apply(self, aggregate: Listing) -> None:
            aggregate.price = Money(self.price_amount, self.currency)

    def change_price(self, *, price: Money, now: datetime) -> None:
        """Set a new price in the listing's currency."""
        check_aware(now)
        self.check_editable()
        if price.currency != self.price.currency:
            raise ListingCurrencyChangeError(f"listing is priced in {self.price.currency}")
        self._trigger(self.PriceChanged, now, previous_amount=self.price.amount,
                      price_amount=price.amount, currency=price.currency)

    class Enriched(Event):
        """Machine enrichment arrived (embedding, condition, image hashes) from a given model."""

        embedding_ref: str | None
        condition_score: float | None
        image_hashes: list[str]
        model_id: str
        model_version: str
        # Added with the enrichment worker (the store held no Enriched event then, so no stored hash moves).
        quality_score: float | None = None

        def apply(self, aggregate: Listing) -> None:
            aggregate.enrichment = {
                "embedding_ref": self.embedding_ref, "condition_score": self.condition_score,
                "image_hashes": list(self.image_hashes), "model_id": self.model_id,
                "model_version": self.model_version, "quality_score": self.quality_score,
            }

    def enrich(self, *, model_id: str, model_version: str, now: datetime, embedding_ref: str | None = None,
               condition_score: float | None = None, image_hashes: list[str] | None = None,
               quality_score: float | None = None) -> None:
        """Record enrichment; allowed until the listing is withdrawn (workers are asynchronous)."""
        check_aware(now)
        if self.status == ListingStatus.WITHDRAWN:
            raise ListingClosedError(listing_id=self.id, status=self.status)
        for name, score in (("condition_score", condition_score), ("quality_score", quality_score)):
            if score is not None and not 0.0 <= score <= 1.0:
                raise InvalidListingError(f"{name} must lie within 0..1")
        self._trigger(self.Enriched, now, embedding_ref=embedding_ref, condition_score=condition_score,
                      image_hashes=list(image_hashes or []), model_id=model_id, model_version=model_version,
                      quality_score=quality_score)

    class Boosted(Event):
        """The listing is promoted until a given time ("auto" by trend jobs or "paid")."""

        until: datetime
        source: str

        def apply(self, aggregate: Listing) -> None:
            aggregate.boosted_until = self.until

    def boost(self, *, until: datetime, source: str, now: datetime) -> None:
        """Promote a published listing until `until`."""
        check_aware(now)
        check_aware(until)
        self.check_published()
        if until <= now:
            raise InvalidListingError("a boost must end in the future")
        self._trigger(self.Boosted, now, until=until, source=source)

    class AutoBoostEnabled(Event):
        """The seller let the auto-boost agent promote the listing when it outperforms its category."""

        def apply(self, aggregate: Listing) -> None:
            aggregate.auto_boost = True

    class AutoBoostDisabled(Event):
        """The seller withdrew the auto-boost agent's permission (boosts already granted run out)."""

        def apply(self, aggregate: Listing) -> None:
            aggregate.auto_boost = False

    def set_auto_boost(self, *, enabled: bool, now: datetime) -> None:
        """Enable or disable auto-boost on an open listing (a repeat records the seller's choice again)."""
        check_aware(now)
        self.check_open()
        self._trigger(self.AutoBoostEnabled if enabled else self.AutoBoostDisabled, now)

    class Suspended(Event):
        """Trust and safety suspended the listing (suspected fraud)."""

        reason: str

        def apply(self, aggregate: Listing) -> None:
            aggregate.status = ListingStatus.SUSPENDED
            aggregate.suspension_reason = self.reason

    def suspend(self, *, reason: str, now: datetime) -> None:
        """Take a draft or published listing off sale for fraud review."""
        check_aware(now)
        self.check_editable()
        self._trigger(self.Suspended, now, reason=reason)

    class Reinstated(Event):
        """A suspension was lifted: the listing is on sale again."""

        def apply(self, aggregate: Listing) -> None:
            aggregate.status = ListingStatus.PUBLISHED
            aggregate.suspension_reason = None

    def reinstate(self, *, now: datetime) -> None:
        """Lift a suspension."""
        check_aware(now)
        if self.status != ListingStatus.SUSPENDED:
            raise ListingNotSuspendedError(listing_id=self.id, status=self.status)
        self._trigger(self.Reinstated, now)

    class Sold(Event):
        """The item was sold through an order (unique goods leave the shelf)."""

        order_id: UUID

        def apply(self, aggregate: Listing) -> None:
            aggregate.status = ListingStatus.SOLD
            aggregate.sold_order_id = self.order_id

    def mark_sold(self, *, order_id: UUID, now: datetime) -> None:
        """Close a published listing as sold by an order."""
        check_aware(now)
        self.check_published()
        self._trigger(self.Sold, now, order_id=order_id)

    class Relisted(Event):
        """The order that bought the item was refunded: the item is on sale again."""

        order_id: UUID

        def apply(self, aggregate: Listing) -> None:
            aggregate.status = ListingStatus.PUBLISHED
            aggregate.sold_order_id = None

    def relist(self, *, now: datetime) -> None:
        """Put a sold item back on sale after its order was refunded."""
        check_aware(now)
        if self.status != ListingStatus.SOLD or self.sold_order_id is None:
            raise ListingNotSoldError(listing_id=self.id, status=self.status)
        self._trigger(self.Relisted, now, order_id=self.sold_order_id)

    class Withdrawn(Event):
        """The seller withdrew the listing."""

        def apply(self, aggregate: Listing) -> None:
            aggregate.status = ListingStatus.WITHDRAWN

    def withdraw(self, *, now: datetime) -> None:
        """Withdraw a listing that is not sold or already withdrawn."""
        check_aware(now)
        self.check_open()
        self._trigger(self.Withdrawn, now)
