"""Order and escrow handlers on the in-memory store: money moves in one append and is never created or lost."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

import pytest

from commands.application import Change
from commands.auth import Principal
from commands.handlers import orders
from domain.errors import NotFoundError, NotPartyError
from domain.listing import Listing, ListingNotPublishedError, ListingStatus
from domain.order import InvalidOrderTransitionError, NotOrderPartyError, Order, OrderStatus, SelfPurchaseError
from domain.wallet import PLATFORM_OWNER_ID, InsufficientFundsError, Wallet, wallet_id_for
from schemas.order import CancelOrder, ConfirmDelivery, OpenDispute, PlaceOrder, ResolveDispute, ShipOrder
from tests.unit.commands.support import World

# A command on an existing order, built for (world, actor, order id).
Act = Callable[[World, Principal, UUID], Change]
ACTS: dict[str, Act] = {
    "ship": lambda w, who, oid: orders.ship_order(w.app, who, ShipOrder(order_id=oid, tracking_ref="DHL-1")),
    "confirm": lambda w, who, oid: orders.confirm_delivery(w.app, who, ConfirmDelivery(order_id=oid)),
    "cancel": lambda w, who, oid: orders.cancel_order(w.app, who, CancelOrder(order_id=oid, reason="changed mind")),
    "dispute": lambda w, who, oid: orders.open_dispute(w.app, who, OpenDispute(order_id=oid, reason="broken")),
    "resolve": lambda w, who, oid: orders.resolve_dispute(
        w.app, who, ResolveDispute(order_id=oid, outcome="refund", note="seller agreed")),
}


def wallet(world: World, owner: UUID) -> Wallet:
    return world.get(Wallet, wallet_id_for(owner, "EUR"))


def money_in_wallets(world: World, *owners: UUID) -> int:
    """Available plus held over the owners' EUR wallets that exist."""
    ids = [wallet_id_for(owner, "EUR") for owner in owners]
    return sum(world.get(Wallet, wid).total.amount for wid in ids if world.app.exists(wid))


def test_place_order_holds_the_price_and_sells_unique_goods_in_one_append(world: World) -> None:
    listing_id = world.listing(price=10_000)
    world.fund(world.buyer, 50_000)
    before = world.position()
    result = world.run(lambda: orders.place_order(world.app, world.buyer, PlaceOrder(listing_id=listing_id)))
    order, buyer = world.get(Order, result.aggregate_id), wallet(world, world.buyer.user_id)
    assert order.status == OrderStatus.FUNDS_HELD and result.body["status"] == "funds_held"
    assert (buyer.available.amount, buyer.held.amount) == (40_000, 10_000)
    assert world.get(Listing, listing_id).status == ListingStatus.SOLD
    # order placed + funds held, wallet held, listing sold: consecutive positions of one append
    assert result.positions == list(range(before + 1, before + 5))


def test_place_order_keeps_a_dataset_on_sale(world: World) -> None:
    listing_id = world.listing(kind="dataset", price=500)
    world.fund(world.buyer, 1_000)
    for _ in range(2):
        world.run(lambda: orders.place_order(world.app, world.buyer, PlaceOrder(listing_id=listing_id)))
    assert world.get(Listing, listing_id).status == ListingStatus.PUBLISHED
    assert wallet(world, world.buyer.user_id).held.amount == 1_000


def test_place_order_refuses_insufficient_funds(world: World) -> None:
    listing_id = world.listing(price=10_000)
    world.fund(world.buyer, 9_999)
    error = world.refuses(InsufficientFundsError,
                          lambda: orders.place_order(world.app, world.buyer, PlaceOrder(listing_id=listing_id)))
    assert error.code == "wallet.insufficient_funds"
    assert world.get(Listing, listing_id).status == ListingStatus.PUBLISHED


def test_place_order_refuses_an_unknown_listing(world: World) -> None:
    world.fund(world.buyer)
    world.refuses(NotFoundError, lambda: orders.place_order(world.app, world.buyer, PlaceOrder(listing_id=uuid4())))


@pytest.mark.parametrize("state", ["draft", "sold"])
def test_place_order_refuses_a_listing_not_on_sale(world: World, state: str) -> None:
    listing_id = world.listing(publish=state != "draft")
    world.fund(world.buyer)
    if state == "sold":
        world.run(lambda: orders.place_order(world.app, world.buyer, PlaceOrder(listing_id=listing_id)))
    error = world.refuses(ListingNotPublishedError,
                          lambda: orders.place_order(world.app, world.buyer, PlaceOrder(listing_id=listing_id)))
    assert error.code == {"draft": "listing.not_published", "sold": "listing.sold"}[state]


def test_place_order_refuses_the_seller_buying_their_own_listing(world: World) -> None:
    listing_id = world.listing()
    world.fund(world.seller)
    error = world.refuses(SelfPurchaseError,
                          lambda: orders.place_order(world.app, world.seller, PlaceOrder(listing_id=listing_id)))
    assert error.code == "order.self_purchase"


def test_place_order_is_refused_to_auditors(world: World) -> None:
    listing_id = world.listing()
    auditor = Principal(uuid4(), "auditor")
    world.forbidden(lambda: orders.place_order(world.app, auditor, PlaceOrder(listing_id=listing_id)))


def test_ship_order_records_the_tracking_reference(world: World) -> None:
    order_id = world.order()
    result = world.run(lambda: ACTS["ship"](world, world.seller, order_id))
    order = world.get(Order, order_id)
    assert (order.status, order.tracking_ref, result.body["status"]) == (OrderStatus.SHIPPED, "DHL-1", "shipped")


def test_confirm_delivery_pays_seller_platform_and_creator_out_of_escrow(world: World) -> None:
    creator = uuid4()
    order_id = world.order(status="shipped", price=10_000, creator_id=creator, royalty_bps=1_000)
    parties = (world.buyer.user_id, world.seller.user_id, creator, PLATFORM_OWNER_ID)
    before = money_in_wallets(world, *parties)
    result = world.run(lambda: ACTS["confirm"](world, world.buyer, order_id))
    fee = 10_000 * world.app.settings.platform_fee_bps // 10_000
    assert world.get(Order, order_id).status == OrderStatus.RELEASED and result.body["status"] == "released"
    assert wallet(world, world.buyer.user_id).held.amount == 0
    assert wallet(world, PLATFORM_OWNER_ID).available.amount == fee
    assert wallet(world, creator).available.amount == 1_000
    assert wallet(world, world.seller.user_id).available.amount == 10_000 - fee - 1_000
    assert money_in_wallets(world, *parties) == before


def test_cancel_order_refunds_the_buyer_and_relists_the_goods(world: World) -> None:
    order_id = world.order(price=10_000)
    world.run(lambda: ACTS["cancel"](world, world.buyer, order_id))
    order, buyer = world.get(Order, order_id), wallet(world, world.buyer.user_id)
    assert order.status == OrderStatus.REFUNDED
    assert (buyer.available.amount, buyer.held.amount) == (50_000, 0)
    assert world.get(Listing, order.listing_id).status == ListingStatus.PUBLISHED


def test_open_dispute_freezes_a_shipped_order(world: World) -> None:
    order_id = world.order(status="shipped")
    world.run(lambda: ACTS["dispute"](world, world.buyer, order_id))
    order = world.get(Order, order_id)
    assert (order.status, order.dispute_reason) == (OrderStatus.DISPUTED, "broken")


def test_resolve_dispute_by_refund_returns_the_escrow(world: World) -> None:
    order_id = world.order(status="disputed", price=10_000)
    world.run(lambda: ACTS["resolve"](world, world.admin, order_id))
    assert world.get(Order, order_id).status == OrderStatus.REFUNDED
    assert wallet(world, world.buyer.user_id).available.amount == 50_000


def test_resolve_dispute_by_release_pays_the_seller(world: World) -> None:
    order_id = world.order(status="disputed", price=10_000)
    cmd = ResolveDispute(order_id=order_id, outcome="release", note="delivered as described")
    world.run(lambda: orders.resolve_dispute(world.app, world.admin, cmd))
    fee = 10_000 * world.app.settings.platform_fee_bps // 10_000
    assert world.get(Order, order_id).status == OrderStatus.RELEASED
    assert wallet(world, world.seller.user_id).available.amount == 10_000 - fee


@pytest.mark.parametrize("name", sorted(ACTS))
def test_unknown_order_is_not_found(world: World, name: str) -> None:
    missing = uuid4()
    error = world.refuses(NotFoundError, lambda: ACTS[name](world, world.admin, missing))
    assert error.code == "domain.not_found"


@pytest.mark.parametrize(
    ("name", "status", "who"),
    [
        ("ship", "funds_held", "buyer"),  # only the seller ships
        ("confirm", "shipped", "seller"),  # only the buyer confirms
        ("cancel", "funds_held", "stranger"),
        ("dispute", "shipped", "stranger"),
    ],
)
def test_order_commands_are_refused_to_the_wrong_party(world: World, name: str, status: str, who: str) -> None:
    order_id = world.order(status=status)
    actor: Principal = getattr(world, who)
    error = world.refuses(NotOrderPartyError, lambda: ACTS[name](world, actor, order_id))
    assert isinstance(error, NotPartyError) and error.code == "order.not_party"


@pytest.mark.parametrize("party", ["buyer", "seller"])
def test_resolve_dispute_is_refused_to_the_parties(world: World, party: str) -> None:
    order_id = world.order(status="disputed")
    actor: Principal = getattr(world, party)
    world.forbidden(lambda: ACTS["resolve"](world, actor, order_id))


@pytest.mark.parametrize(
    ("name", "status", "who"),
    [
        ("ship", "shipped", "seller"),  # shipped twice
        ("confirm", "funds_held", "buyer"),  # not shipped yet
        ("cancel", "shipped", "buyer"),  # too late to cancel
        ("dispute", "disputed", "buyer"),  # disputed twice
        ("resolve", "shipped", "admin"),  # nothing to resolve
    ],
)
def test_order_commands_in_the_wrong_state_are_invalid_transitions(
    world: World, name: str, status: str, who: str
) -> None:
    order_id = world.order(status=status)
    actor: Principal = getattr(world, who)
    error = world.refuses(InvalidOrderTransitionError, lambda: ACTS[name](world, actor, order_id))
    assert error.code == "order.invalid_transition"
