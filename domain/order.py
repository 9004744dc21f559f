"""Order with escrow: the buyer's money is held until delivery, then released or refunded.

States: placed -> funds_held -> shipped -> delivered -> released;
placed -> cancelled; funds_held -> cancelled -> refunded;
funds_held|shipped -> disputed -> resolved -> released | refunded.
`settlement_due` ("release" | "refund" | None) says which money movement the order now waits for;
`domain/escrow.py` performs it together with the wallets so that all are saved in one append.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.chain import ChainedAggregate
from domain.errors import DomainError, NotPartyError, check_aware
from domain.money import Money, SaleSplit, check_bps, split_sale


class OrderStatus(StrEnum):
    """Where an order is in its life cycle."""

    PLACED = "placed"
    FUNDS_HELD = "funds_held"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    DISPUTED = "disputed"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"
    RELEASED = "released"
    REFUNDED = "refunded"


class DisputeOutcome(StrEnum):
    """How an admin settles a dispute."""

    REFUND = "refund"
    RELEASE = "release"


class OrderError(DomainError):
    """An order rule was broken."""

    code = "order.error"


class InvalidOrderTransitionError(OrderError):
    """The order is not in a state that allows this."""

    code = "order.invalid_transition"


class SelfPurchaseError(OrderError):
    """A seller cannot buy their own listing."""

    code = "order.self_purchase"


class InvalidOrderError(OrderError):
    """An order field is malformed."""

    code = "order.invalid"


class NotOrderPartyError(NotPartyError):
    """Only the order's buyer or seller (as the step requires) may do this."""

    code = "order.not_party"


_CANCELLABLE = {OrderStatus.PLACED, OrderStatus.FUNDS_HELD}
_DISPUTABLE = {OrderStatus.FUNDS_HELD, OrderStatus.SHIPPED}


class Order(ChainedAggregate):
    """A buyer's purchase of a listing, paid through escrow."""

    class Event(ChainedAggregate.Event):
        """Base class of order events."""

    class Placed(Event, ChainedAggregate.Created):
        """A buyer placed an order at the listing's price and the current fee and royalty rates."""

        buyer_id: UUID
        seller_id: UUID
        listing_id: UUID
        price_amount: int
        currency: str
        fee_bps: int
        royalty_bps: int
        creator_id: UUID | None

    def __init__(self, buyer_id: UUID, seller_id: UUID, listing_id: UUID, price_amount: int,
                 currency: str, fee_bps: int, royalty_bps: int, creator_id: UUID | None) -> None:
        self.buyer_id = buyer_id
        self.seller_id = seller_id
        self.listing_id = listing_id
        self.price = Money(price_amount, currency)
        self.fee_bps = fee_bps
        self.royalty_bps = royalty_bps
        self.creator_id = creator_id
        self.status = OrderStatus.PLACED
        self.funds_held = False
        self.settlement_due: str | None = None
        self.tracking_ref: str | None = None
        self.dispute_reason: str | None = None
        self.dispute_outcome: str | None = None
        self.split: SaleSplit | None = None

    @classmethod
    def place(cls, *, order_id: UUID, buyer_id: UUID, seller_id: UUID, listing_id: UUID, price: Money,
              fee_bps: int, royalty_bps: int, creator_id: UUID | None, now: datetime) -> Order:
        """Place an order (money is not held yet: see `domain.escrow.place_order`)."""
        check_aware(now)
        if buyer_id == seller_id:
            raise SelfPurchaseError(buyer_id=buyer_id)
        if price.is_zero:
            raise InvalidOrderError("an order needs a positive price")
        check_bps(fee_bps, royalty_bps)
        if royalty_bps > 0 and creator_id is None:
            raise InvalidOrderError("a royalty needs a creator_id")
        return cls._create_chained(
            cls.Placed, order_id, now, buyer_id=buyer_id, seller_id=seller_id, listing_id=listing_id,
            price_amount=price.amount, currency=price.currency, fee_bps=fee_bps, royalty_bps=royalty_bps,
            creator_id=creator_id,
        )

    # Guards ------------------------------------------------------------------------------------------

    def check_status(self, *allowed: OrderStatus) -> None:
        """The order must be in one of the allowed states."""
        if self.status not in allowed:
            raise InvalidOrderTransitionError(
                f"order is {self.status}, expected one of {', '.join(allowed)}", order_id=self.id
            )

    def check_buyer(self, user_id: UUID) -> None:
        """Only the buyer may do this."""
        if user_id != self.buyer_id:
            raise NotOrderPartyError("only the buyer may do this", order_id=self.id, user_id=user_id)

    def check_seller(self, user_id: UUID) -> None:
        """Only the seller may do this."""
        if user_id != self.seller_id:
            raise NotOrderPartyError("only the seller may do this", order_id=self.id, user_id=user_id)

    def check_party(self, user_id: UUID) -> None:
        """Only the buyer or the seller may do this."""
        if user_id not in (self.buyer_id, self.seller_id):
            raise NotOrderPartyError("only the buyer or seller may do this", order_id=self.id,
                                     user_id=user_id)

    def check_settlement_due(self, kind: str) -> None:
        """The order must be waiting for this money movement."""
        if self.settlement_due != kind:
            raise InvalidOrderTransitionError(f"no {kind} is due on this order", order_id=self.id)

    @property
    def sale_split(self) -> SaleSplit:
        """How the price will be (or was) shared between seller, platform and creator."""
        return split_sale(self.price, self.fee_bps, self.royalty_bps)

    # Commands ----------------------------------------------------------------------------------------

    class FundsHeld(Event):
        """The buyer's money is held in escrow for this order."""

        amount: int

        def apply(self, aggregate: Order) -> None:
            aggregate.status = OrderStatus.FUNDS_HELD
            aggregate.funds_held = True

    def hold_funds(self, *, now: datetime) -> None:
        """Record that the price is held from the buyer's wallet."""
        check_aware(now)
        self.check_status(OrderStatus.PLACED)
        self._trigger(self.FundsHeld, now, amount=self.price.amount)

    class Shipped(Event):
        """The seller shipped (or, for digital items, delivered access)."""

        tracking_ref: str | None

        def apply(self, aggregate: Order) -> None:
            aggregate.status = OrderStatus.SHIPPED
            aggregate.tracking_ref = self.tracking_ref

    def ship(self, *, by: UUID, now: datetime, tracking_ref: str | None = None) -> None:
        """The seller ships a paid order."""
        check_aware(now)
        self.check_seller(by)
        self.check_status(OrderStatus.FUNDS_HELD)
        self._trigger(self.Shipped, now, tracking_ref=tracking_ref)

    class DeliveryConfirmed(Event):
        """The buyer confirmed delivery: the escrow is due to the seller."""

        def apply(self, aggregate: Order) -> None:
            aggregate.status = OrderStatus.DELIVERED
            aggregate.settlement_due = "release"

    def confirm_delivery(self, *, by: UUID, now: datetime) -> None:
        """The buyer confirms a shipped order arrived."""
        check_aware(now)
        self.check_buyer(by)
        self.check_status(OrderStatus.SHIPPED)
        self._trigger(self.DeliveryConfirmed, now)

    class Released(Event):
        """The escrow was paid out: seller proceeds, platform fee and creator royalty (sum = price)."""

        seller_amount: int
        fee_amount: int
        royalty_amount: int

        def apply(self, aggregate: Order) -> None:
            aggregate.status = OrderStatus.RELEASED
            aggregate.settlement_due = None
            aggregate.funds_held = False
            currency = aggregate.price.currency
            aggregate.split = SaleSplit(Money(self.seller_amount, currency), Money(self.fee_amount, currency),
                                        Money(self.royalty_amount, currency))

    def release(self, *, now: datetime) -> SaleSplit:
        """Pay the escrow out; returns the exact split the wallets must receive."""
        check_aware(now)
        self.check_settlement_due("release")
        split = self.sale_split
        self._trigger(self.Released, now, seller_amount=split.seller.amount, fee_amount=split.fee.amount,
                      royalty_amount=split.royalty.amount)
        return split

    class Cancelled(Event):
        """The buyer or seller cancelled before shipping."""

        by: UUID
        reason: str

        def apply(self, aggregate: Order) -> None:
            aggregate.status = OrderStatus.CANCELLED
            aggregate.settlement_due = "refund" if aggregate.funds_held else None

    def cancel(self, *, by: UUID, reason: str, now: datetime) -> None:
        """Cancel an order that has not shipped."""
        check_aware(now)
        self.check_party(by)
        self.check_status(*_CANCELLABLE)
        self._trigger(self.Cancelled, now, by=by, reason=reason)

    class Refunded(Event):
        """The held money went back to the buyer."""

        amount: int

        def apply(self, aggregate: Order) -> None:
            aggregate.status = OrderStatus.REFUNDED
            aggregate.settlement_due = None
            aggregate.funds_held = False

    def refund(self, *, now: datetime) -> Money:
        """Return the escrow to the buyer; returns the amount."""
        check_aware(now)
        self.check_settlement_due("refund")
        self._trigger(self.Refunded, now, amount=self.price.amount)
        return self.price

    class DisputeOpened(Event):
        """The buyer or seller opened a dispute; the escrow stays held."""

        by: UUID
        reason: str

        def apply(self, aggregate: Order) -> None:
            aggregate.status = OrderStatus.DISPUTED
            aggregate.dispute_reason = self.reason

    def open_dispute(self, *, by: UUID, reason: str, now: datetime) -> None:
        """Dispute a paid order before delivery is confirmed."""
        check_aware(now)
        self.check_party(by)
        self.check_status(*_DISPUTABLE)
        self._trigger(self.DisputeOpened, now, by=by, reason=reason)

    class DisputeResolved(Event):
        """An admin resolved the dispute: refund the buyer or release to the seller."""

        outcome: str
        resolver_id: UUID
        note: str

        def apply(self, aggregate: Order) -> None:
            aggregate.status = OrderStatus.RESOLVED
            aggregate.dispute_outcome = self.outcome
            aggregate.settlement_due = self.outcome

    def resolve_dispute(self, *, outcome: DisputeOutcome | str, resolver_id: UUID, note: str,
                        now: datetime) -> None:
        """Settle an open dispute (the caller checks the resolver is an admin)."""
        check_aware(now)
        self.check_status(OrderStatus.DISPUTED)
        try:
            outcome = DisputeOutcome(outcome)
        except ValueError as exc:
            raise InvalidOrderError(f"unknown dispute outcome {outcome!r}") from exc
        self._trigger(self.DisputeResolved, now, outcome=outcome.value, resolver_id=resolver_id, note=note)
