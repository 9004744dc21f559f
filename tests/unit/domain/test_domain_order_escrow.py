"""Order state machine and the escrow use cases moving money between wallets."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain import escrow
from domain.listing import Listing, ListingNotPublishedError, ListingStatus
from domain.money import Money
from domain.order import (
    InvalidOrderError,
    InvalidOrderTransitionError,
    NotOrderPartyError,
    Order,
    OrderStatus,
    SelfPurchaseError,
)
from domain.wallet import InsufficientFundsError, Wallet
from tests.unit.domain.support import ADMIN, BUYER, CREATOR, SELLER, STRANGER, T0, at, make_listing

ORDER = UUID(int=200)


def _total(wallets: dict[str, Wallet]) -> int:
    return sum(w.total.amount for w in wallets.values())


def _place(listing: Listing, wallets: dict[str, Wallet]) -> Order:
    result = escrow.place_order(
        order_id=ORDER,
        listing=listing,
        buyer_id=BUYER,
        buyer_wallet=wallets["buyer"],
        fee_bps=1_000,
        now=at(5),
    )
    return result.order


def _pay(wallets: dict[str, Wallet]) -> dict[str, Wallet]:
    return {
        "buyer_wallet": wallets["buyer"],
        "seller_wallet": wallets["seller"],
        "platform_wallet": wallets["platform"],
        "creator_wallet": wallets["creator"],
    }


def test_place_order_holds_price_and_reserves_goods(listing: Listing, wallets: dict[str, Wallet]) -> None:
    result = escrow.place_order(
        order_id=ORDER,
        listing=listing,
        buyer_id=BUYER,
        buyer_wallet=wallets["buyer"],
        fee_bps=1_000,
        now=at(5),
    )
    order = result.order
    assert order.status == OrderStatus.FUNDS_HELD and order.price == Money(10_000, "EUR")
    assert (order.fee_bps, order.royalty_bps, order.creator_id) == (1_000, 500, CREATOR)
    assert wallets["buyer"].held == Money(10_000, "EUR") and wallets["buyer"].available == Money(
        40_000, "EUR"
    )
    assert listing.status == ListingStatus.SOLD
    assert set(map(id, result.aggregates)) == {id(order), id(wallets["buyer"]), id(listing)}


def test_digital_listing_is_not_reserved(wallets: dict[str, Wallet]) -> None:
    item = make_listing(kind="dataset")
    result = escrow.place_order(
        order_id=ORDER, listing=item, buyer_id=BUYER, buyer_wallet=wallets["buyer"], fee_bps=1_000, now=at(5)
    )
    assert item.status == ListingStatus.PUBLISHED and item not in result.aggregates


def test_happy_path_releases_exact_split(listing: Listing, wallets: dict[str, Wallet]) -> None:
    before = _total(wallets)
    order = _place(listing, wallets)
    order.ship(by=SELLER, tracking_ref="DHL-1", now=at(6))
    result = escrow.confirm_delivery(order, by=BUYER, now=at(7), **_pay(wallets))
    assert order.status == OrderStatus.RELEASED and order.settlement_due is None
    assert wallets["seller"].available == Money(8_500, "EUR")
    assert wallets["platform"].available == Money(1_000, "EUR")
    assert wallets["creator"].available == Money(500, "EUR")
    assert wallets["buyer"].total == Money(40_000, "EUR") and _total(wallets) == before
    assert len(result.aggregates) == 5
    released = [e for e in order.collect_events() if isinstance(e, Order.Released)][0]
    assert released.seller_amount + released.fee_amount + released.royalty_amount == 10_000


def test_release_without_royalty_needs_no_creator_wallet(wallets: dict[str, Wallet]) -> None:
    item = make_listing(royalty_bps=0)
    order = _place(item, wallets)
    order.ship(by=SELLER, now=at(6))
    pay = _pay(wallets) | {"creator_wallet": None}
    result = escrow.confirm_delivery(order, by=BUYER, now=at(7), **pay)
    assert wallets["seller"].available == Money(9_000, "EUR") and len(result.aggregates) == 4


def test_cancel_before_shipping_refunds_and_relists(listing: Listing, wallets: dict[str, Wallet]) -> None:
    order = _place(listing, wallets)
    result = escrow.cancel(
        order, by=BUYER, reason="changed my mind", buyer_wallet=wallets["buyer"], listing=listing, now=at(6)
    )
    assert order.status == OrderStatus.REFUNDED
    assert wallets["buyer"].available == Money(50_000, "EUR") and wallets["buyer"].held.is_zero
    assert listing.status == ListingStatus.PUBLISHED and listing in result.aggregates


def test_cancel_after_shipping_refused(listing: Listing, wallets: dict[str, Wallet]) -> None:
    order = _place(listing, wallets)
    order.ship(by=SELLER, now=at(6))
    with pytest.raises(InvalidOrderTransitionError) as info:
        escrow.cancel(
            order, by=BUYER, reason="late", buyer_wallet=wallets["buyer"], listing=listing, now=at(7)
        )
    assert info.value.code == "order.invalid_transition"


@pytest.mark.parametrize(
    ("outcome", "buyer_total", "seller_total"),
    [
        ("refund", 50_000, 0),
        ("release", 40_000, 8_500),
    ],
)
def test_dispute_resolution_moves_money(
    listing: Listing, wallets: dict[str, Wallet], outcome: str, buyer_total: int, seller_total: int
) -> None:
    order = _place(listing, wallets)
    order.ship(by=SELLER, now=at(6))
    order.open_dispute(by=BUYER, reason="not as described", now=at(7))
    with pytest.raises(InvalidOrderTransitionError):
        order.confirm_delivery(by=BUYER, now=at(8))
    escrow.resolve_dispute(
        order,
        outcome=outcome,
        resolver_id=ADMIN,
        note="checked photos",
        listing=listing,
        now=at(8),
        **_pay(wallets),
    )
    assert order.status == (OrderStatus.REFUNDED if outcome == "refund" else OrderStatus.RELEASED)
    assert wallets["buyer"].total.amount == buyer_total and wallets["seller"].total.amount == seller_total
    assert _total(wallets) == 50_000


def test_place_order_refuses_unpublished_and_unfunded(wallets: dict[str, Wallet]) -> None:
    item = make_listing()
    item.withdraw(now=at(2))
    with pytest.raises(ListingNotPublishedError):
        escrow.place_order(
            order_id=ORDER, listing=item, buyer_id=BUYER, buyer_wallet=wallets["buyer"], fee_bps=0, now=at(5)
        )
    poor = Wallet.open(owner_id=BUYER, currency="EUR", now=T0)
    with pytest.raises(InsufficientFundsError):
        escrow.place_order(
            order_id=ORDER, listing=make_listing(), buyer_id=BUYER, buyer_wallet=poor, fee_bps=0, now=at(5)
        )


def test_wrong_wallets_refused(listing: Listing, wallets: dict[str, Wallet]) -> None:
    with pytest.raises(escrow.WrongWalletError):
        escrow.place_order(
            order_id=ORDER,
            listing=listing,
            buyer_id=BUYER,
            buyer_wallet=wallets["seller"],
            fee_bps=0,
            now=at(5),
        )
    order = _place(make_listing(listing_id=101), wallets)
    order.ship(by=SELLER, now=at(6))
    swapped = _pay(wallets) | {"seller_wallet": wallets["creator"]}
    with pytest.raises(escrow.WrongWalletError) as info:
        escrow.confirm_delivery(order, by=BUYER, now=at(7), **swapped)
    assert info.value.code == "escrow.wrong_wallet" and order.status == OrderStatus.SHIPPED


def test_self_purchase_and_bad_orders_refused() -> None:
    with pytest.raises(SelfPurchaseError):
        Order.place(
            order_id=ORDER,
            buyer_id=SELLER,
            seller_id=SELLER,
            listing_id=UUID(int=1),
            price=Money(1, "EUR"),
            fee_bps=0,
            royalty_bps=0,
            creator_id=None,
            now=T0,
        )
    with pytest.raises(InvalidOrderError):
        Order.place(
            order_id=ORDER,
            buyer_id=BUYER,
            seller_id=SELLER,
            listing_id=UUID(int=1),
            price=Money(1, "EUR"),
            fee_bps=0,
            royalty_bps=10,
            creator_id=None,
            now=T0,
        )


def _placed() -> Order:
    return Order.place(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        listing_id=UUID(int=1),
        price=Money(1_000, "EUR"),
        fee_bps=500,
        royalty_bps=0,
        creator_id=None,
        now=T0,
    )


def test_strict_state_machine() -> None:
    order = _placed()
    with pytest.raises(InvalidOrderTransitionError):
        order.ship(by=SELLER, now=at(1))
    with pytest.raises(InvalidOrderTransitionError):
        order.release(now=at(1))
    with pytest.raises(InvalidOrderTransitionError):
        order.refund(now=at(1))
    with pytest.raises(InvalidOrderTransitionError):
        order.resolve_dispute(outcome="refund", resolver_id=ADMIN, note="", now=at(1))
    order.hold_funds(now=at(1))
    with pytest.raises(InvalidOrderTransitionError):
        order.hold_funds(now=at(2))
    with pytest.raises(InvalidOrderTransitionError):
        order.confirm_delivery(by=BUYER, now=at(2))
    order.ship(by=SELLER, now=at(2))
    order.confirm_delivery(by=BUYER, now=at(3))
    with pytest.raises(InvalidOrderTransitionError):
        order.open_dispute(by=BUYER, reason="late", now=at(4))
    order.release(now=at(4))
    with pytest.raises(InvalidOrderTransitionError):
        order.release(now=at(5))


def test_cancel_without_held_funds_needs_no_refund() -> None:
    order = _placed()
    order.cancel(by=SELLER, reason="out of stock", now=at(1))
    assert order.status == OrderStatus.CANCELLED and order.settlement_due is None
    with pytest.raises(InvalidOrderTransitionError):
        order.refund(now=at(2))


def test_only_parties_act() -> None:
    order = _placed()
    order.hold_funds(now=at(1))
    with pytest.raises(NotOrderPartyError):
        order.ship(by=BUYER, now=at(2))
    with pytest.raises(NotOrderPartyError):
        order.cancel(by=STRANGER, reason="x", now=at(2))
    order.ship(by=SELLER, now=at(2))
    with pytest.raises(NotOrderPartyError) as info:
        order.confirm_delivery(by=SELLER, now=at(3))
    assert info.value.code == "order.not_party"


def test_unknown_dispute_outcome_refused() -> None:
    order = _placed()
    order.hold_funds(now=at(1))
    order.open_dispute(by=SELLER, reason="buyer unreachable", now=at(2))
    with pytest.raises(InvalidOrderError):
        order.resolve_dispute(outcome="split", resolver_id=ADMIN, note="", now=at(3))
