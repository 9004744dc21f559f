"""Orders with escrow: each money-moving command saves the order and its wallets in one append."""

from __future__ import annotations

from uuid import uuid4

from commands.application import Change, Marketplace
from commands.auth import Principal
from commands.handlers import require_not_forgotten, require_role
from domain import escrow
from domain.escrow import EscrowResult
from domain.listing import Listing
from domain.order import Order
from domain.wallet import PLATFORM_OWNER_ID, Wallet
from schemas.order import CancelOrder, ConfirmDelivery, OpenDispute, PlaceOrder, ResolveDispute, ShipOrder


def _change(result: EscrowResult) -> Change:
    order = result.order
    return Change(order, result.aggregates, body={"order_id": str(order.id), "status": order.status.value})


def _payout_wallets(app: Marketplace, order: Order) -> dict[str, Wallet | None]:
    """Every wallet a settlement of this order may touch, opened where missing."""
    currency = order.price.currency
    creator = order.creator_id
    return {
        "buyer_wallet": app.wallet(order.buyer_id, currency),
        "seller_wallet": app.wallet(order.seller_id, currency),
        "platform_wallet": app.wallet(PLATFORM_OWNER_ID, currency),
        "creator_wallet": app.wallet(creator, currency) if creator is not None else None,
    }


def place_order(app: Marketplace, actor: Principal, cmd: PlaceOrder) -> Change:
    require_role(actor, "buyer", "seller")
    listing = app.load(Listing, cmd.listing_id)
    require_not_forgotten(app, listing.seller_id)  # a forgotten seller's listing sells no more
    buyer_wallet = app.wallet(actor.user_id, listing.price.currency)
    result = escrow.place_order(order_id=uuid4(), listing=listing, buyer_id=actor.user_id,
                                buyer_wallet=buyer_wallet, fee_bps=app.settings.platform_fee_bps, now=app.now())
    return _change(result)


def ship_order(app: Marketplace, actor: Principal, cmd: ShipOrder, if_match: int | None = None) -> Change:
    order = app.load(Order, cmd.order_id, if_match=if_match)
    order.ship(by=actor.user_id, tracking_ref=cmd.tracking_ref, now=app.now())
    return Change(order, body={"order_id": str(order.id), "status": order.status.value})


def confirm_delivery(app: Marketplace, actor: Principal, cmd: ConfirmDelivery, if_match: int | None = None) -> Change:
    order = app.load(Order, cmd.order_id, if_match=if_match)
    wallets = _payout_wallets(app, order)
    return _change(escrow.confirm_delivery(order, by=actor.user_id, now=app.now(), **wallets))  # type: ignore[arg-type]


def cancel_order(app: Marketplace, actor: Principal, cmd: CancelOrder, if_match: int | None = None) -> Change:
    order = app.load(Order, cmd.order_id, if_match=if_match)
    listing = app.load(Listing, order.listing_id)
    buyer_wallet = app.wallet(order.buyer_id, order.price.currency)
    return _change(escrow.cancel(order, by=actor.user_id, reason=cmd.reason, buyer_wallet=buyer_wallet,
                                 listing=listing, now=app.now()))


def open_dispute(app: Marketplace, actor: Principal, cmd: OpenDispute, if_match: int | None = None) -> Change:
    order = app.load(Order, cmd.order_id, if_match=if_match)
    order.open_dispute(by=actor.user_id, reason=cmd.reason, now=app.now())
    return Change(order, body={"order_id": str(order.id), "status": order.status.value})


def resolve_dispute(app: Marketplace, actor: Principal, cmd: ResolveDispute, if_match: int | None = None) -> Change:
    require_role(actor, "admin")
    order = app.load(Order, cmd.order_id, if_match=if_match)
    listing = app.load(Listing, order.listing_id)
    result = escrow.resolve_dispute(order, outcome=cmd.outcome, resolver_id=actor.user_id, note=cmd.note,
                                    listing=listing, now=app.now(), **_payout_wallets(app, order))  # type: ignore[arg-type]
    return _change(result)
