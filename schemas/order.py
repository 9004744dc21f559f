"""Schemas of Order events and commands."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from schemas.base import (
    BasisPoints,
    CommandSchema,
    CreatedEventSchema,
    Currency,
    EventSchema,
    MinorUnits,
    PositiveMinorUnits,
    Reason,
    Reference,
)


class _OrderEvent(EventSchema):
    aggregate: ClassVar[str] = "order"


class OrderPlaced(CreatedEventSchema):
    """A buyer placed an order."""

    schema_name: ClassVar[str] = "OrderPlaced"
    event_type: ClassVar[str] = "Order.Placed"
    aggregate: ClassVar[str] = "order"

    buyer_id: UUID
    seller_id: UUID
    listing_id: UUID
    price_amount: PositiveMinorUnits
    currency: Currency
    fee_bps: BasisPoints
    royalty_bps: BasisPoints
    creator_id: UUID | None


class OrderFundsHeld(_OrderEvent):
    """The buyer's money is held in escrow."""

    schema_name: ClassVar[str] = "OrderFundsHeld"
    event_type: ClassVar[str] = "Order.FundsHeld"

    amount: PositiveMinorUnits


class OrderShipped(_OrderEvent):
    """The seller shipped."""

    schema_name: ClassVar[str] = "OrderShipped"
    event_type: ClassVar[str] = "Order.Shipped"

    tracking_ref: str | None


class OrderDeliveryConfirmed(_OrderEvent):
    """The buyer confirmed delivery."""

    schema_name: ClassVar[str] = "OrderDeliveryConfirmed"
    event_type: ClassVar[str] = "Order.DeliveryConfirmed"


class OrderReleased(_OrderEvent):
    """The escrow was paid out (the three amounts sum to the price)."""

    schema_name: ClassVar[str] = "OrderReleased"
    event_type: ClassVar[str] = "Order.Released"

    seller_amount: MinorUnits
    fee_amount: MinorUnits
    royalty_amount: MinorUnits


class OrderCancelled(_OrderEvent):
    """The buyer or seller cancelled before shipping."""

    schema_name: ClassVar[str] = "OrderCancelled"
    event_type: ClassVar[str] = "Order.Cancelled"

    by: UUID
    reason: str


class OrderRefunded(_OrderEvent):
    """The held money went back to the buyer."""

    schema_name: ClassVar[str] = "OrderRefunded"
    event_type: ClassVar[str] = "Order.Refunded"

    amount: PositiveMinorUnits


class OrderDisputeOpened(_OrderEvent):
    """A dispute was opened."""

    schema_name: ClassVar[str] = "OrderDisputeOpened"
    event_type: ClassVar[str] = "Order.DisputeOpened"

    by: UUID
    reason: str


class OrderDisputeResolved(_OrderEvent):
    """An admin resolved the dispute."""

    schema_name: ClassVar[str] = "OrderDisputeResolved"
    event_type: ClassVar[str] = "Order.DisputeResolved"

    outcome: Literal["refund", "release"]
    resolver_id: UUID
    note: str


class PlaceOrder(CommandSchema):
    """Buy a published listing at its current price; the price is held in escrow from your wallet."""

    schema_name: ClassVar[str] = "PlaceOrder"

    listing_id: UUID


class ShipOrder(CommandSchema):
    """The seller ships a paid order."""

    schema_name: ClassVar[str] = "ShipOrder"

    order_id: UUID
    tracking_ref: Reference | None = None


class ConfirmDelivery(CommandSchema):
    """The buyer confirms delivery; the escrow is released to the seller."""

    schema_name: ClassVar[str] = "ConfirmDelivery"

    order_id: UUID


class CancelOrder(CommandSchema):
    """Cancel an order that has not shipped; held money is refunded."""

    schema_name: ClassVar[str] = "CancelOrder"

    order_id: UUID
    reason: Reason


class OpenDispute(CommandSchema):
    """Dispute a paid, undelivered order."""

    schema_name: ClassVar[str] = "OpenDispute"

    order_id: UUID
    reason: Reason


class ResolveDispute(CommandSchema):
    """An admin settles a dispute: refund the buyer or release to the seller."""

    schema_name: ClassVar[str] = "ResolveDispute"

    order_id: UUID
    outcome: Literal["refund", "release"]
    note: Reason


EVENTS: tuple[type[EventSchema], ...] = (
    OrderPlaced, OrderFundsHeld, OrderShipped, OrderDeliveryConfirmed, OrderReleased, OrderCancelled,
    OrderRefunded, OrderDisputeOpened, OrderDisputeResolved,
)
COMMANDS: tuple[type[CommandSchema], ...] = (
    PlaceOrder, ShipOrder, ConfirmDelivery, CancelOrder, OpenDispute, ResolveDispute,
)
