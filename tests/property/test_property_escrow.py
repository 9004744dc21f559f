"""Random command sequences over wallets, listings and orders: money is conserved, logs replay exactly.

Amounts reach up to `MAX_MINOR_UNITS`: no wallet ever holds more, and a move that would overfill one is
refused whole (nothing half-written).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain import escrow
from domain.chain import ChainedAggregate, verify_chain
from domain.errors import DomainError
from domain.listing import Listing
from domain.money import Money
from domain.order import Order
from domain.wallet import PLATFORM_OWNER_ID, Wallet
from schemas.base import MAX_MINOR_UNITS

T0 = datetime(2024, 1, 1, tzinfo=UTC)
USERS = [UUID(int=i) for i in range(1, 5)]
CREATOR = UUID(int=9)
ADMIN = UUID(int=10)
EUR = "EUR"
# (seller index, kind, price, royalty bps, creator) for the listings on sale.
LISTINGS = [
    (0, "goods", 12_345, 0, None),
    (1, "dataset", 999, 500, CREATOR),
    (2, "goods", 1, 1_000, USERS[3]),
    (3, "dataset", MAX_MINOR_UNITS, 0, None),
]

users = st.sampled_from(USERS)
# Mostly the right party acts, so that sequences get deep into the state machine; others test refusals.
mostly_seller = st.sampled_from(["seller", "seller", "seller", "buyer", "other"])
mostly_buyer = st.sampled_from(["buyer", "buyer", "buyer", "seller", "other"])
amounts = st.one_of(st.integers(min_value=1, max_value=30_000),
                    st.integers(min_value=MAX_MINOR_UNITS - 30_000, max_value=MAX_MINOR_UNITS))


class EscrowMachine(RuleBasedStateMachine):
    """Drives the escrow use cases the way the command application would, saving each result atomically."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0
        self.log: list[Any] = []
        self.deposited = 0
        self.withdrawn = 0
        self.seen_versions: dict[UUID, int] = {}
        self.live: dict[UUID, ChainedAggregate] = {}
        self.wallets: dict[UUID, Wallet] = {}
        self.listings: list[Listing] = []
        self.orders: list[Order] = []

    def now(self) -> datetime:
        self.clock += 1
        return T0 + timedelta(minutes=self.clock)

    def save(self, *aggregates: ChainedAggregate) -> None:
        """What `Application.save(*aggregates)` does to the log: append all pending events at once."""
        for agg in aggregates:
            self.live[agg.id] = agg
            self.log.extend(agg.collect_events())

    def attempt(self, use_case: Any, involved: list[ChainedAggregate]) -> None:
        """Run a use case; on a domain error nothing may have changed (no half-written state)."""
        versions = [agg.version for agg in involved]
        try:
            result = use_case()
        except DomainError:
            assert [agg.version for agg in involved] == versions
            assert all(not agg.pending_events for agg in involved)
            return
        self.save(*result.aggregates)

    @initialize()
    def open_wallets_and_listings(self) -> None:
        for owner in [*USERS, CREATOR, PLATFORM_OWNER_ID]:
            wallet = Wallet.open(owner_id=owner, currency=EUR, now=self.now())
            self.wallets[owner] = wallet
            self.save(wallet)
        for n, (seller, kind, price, royalty, creator) in enumerate(LISTINGS):
            item = Listing.draft(
                listing_id=UUID(int=1_000 + n),
                seller_id=USERS[seller],
                kind=kind,
                title=f"item {n}",
                description="",
                category="misc",
                price=Money(price, EUR),
                creator_id=creator,
                royalty_bps=royalty,
                now=self.now(),
            )
            item.publish(now=self.now())
            self.listings.append(item)
            self.save(item)

    @rule(user=users, amount=amounts)
    def deposit(self, user: UUID, amount: int) -> None:
        wallet = self.wallets[user]
        room = MAX_MINOR_UNITS - wallet.total.amount
        try:
            wallet.deposit(amount=Money(amount, EUR), reference="psp", now=self.now())
        except DomainError as refused:
            assert refused.code == "wallet.balance_limit" and amount > room
            assert not wallet.pending_events
            return
        self.deposited += amount
        self.save(self.wallets[user])

    @rule(user=users, amount=amounts)
    def withdraw(self, user: UUID, amount: int) -> None:
        try:
            self.wallets[user].withdraw(amount=Money(amount, EUR), reference="payout", now=self.now())
        except DomainError:
            return
        self.withdrawn += amount
        self.save(self.wallets[user])

    @rule(buyer=users, index=st.integers(0, len(LISTINGS) - 1), fee_bps=st.integers(0, 3_000))
    def place_order(self, buyer: UUID, index: int, fee_bps: int) -> None:
        listing, wallet = self.listings[index], self.wallets[buyer]
        order_id = UUID(int=10_000 + len(self.orders))

        def use_case() -> escrow.EscrowResult:
            result = escrow.place_order(
                order_id=order_id,
                listing=listing,
                buyer_id=buyer,
                buyer_wallet=wallet,
                fee_bps=fee_bps,
                now=self.now(),
            )
            self.orders.append(result.order)
            return result

        self.attempt(use_case, [listing, wallet])

    def _wallets_for(self, order: Order) -> dict[str, Any]:
        return {
            "buyer_wallet": self.wallets[order.buyer_id],
            "seller_wallet": self.wallets[order.seller_id],
            "platform_wallet": self.wallets[PLATFORM_OWNER_ID],
            "creator_wallet": self.wallets[order.creator_id] if order.creator_id else None,
        }

    def _involved(self, order: Order) -> list[ChainedAggregate]:
        return [order, *(w for w in self._wallets_for(order).values() if w is not None), *self.listings]

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), by=mostly_seller)
    def ship(self, data: st.DataObject, by: str) -> None:
        order = self.orders[data.draw(st.integers(0, len(self.orders) - 1))]
        actor = self._actor(order, by)
        try:
            order.ship(by=actor, now=self.now())
        except DomainError:
            assert not order.pending_events
            return
        self.save(order)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), by=mostly_buyer)
    def confirm_delivery(self, data: st.DataObject, by: str) -> None:
        order = self.orders[data.draw(st.integers(0, len(self.orders) - 1))]
        self.attempt(
            lambda: escrow.confirm_delivery(
                order, by=self._actor(order, by), now=self.now(), **self._wallets_for(order)
            ),
            self._involved(order),
        )

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), by=st.sampled_from(["buyer", "seller", "other"]))
    def cancel(self, data: st.DataObject, by: str) -> None:
        order = self.orders[data.draw(st.integers(0, len(self.orders) - 1))]
        listing = next(x for x in self.listings if x.id == order.listing_id)
        self.attempt(
            lambda: escrow.cancel(
                order,
                by=self._actor(order, by),
                reason="changed mind",
                buyer_wallet=self.wallets[order.buyer_id],
                listing=listing,
                now=self.now(),
            ),
            self._involved(order),
        )

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), by=st.sampled_from(["buyer", "seller", "other"]))
    def open_dispute(self, data: st.DataObject, by: str) -> None:
        order = self.orders[data.draw(st.integers(0, len(self.orders) - 1))]
        try:
            order.open_dispute(by=self._actor(order, by), reason="not as described", now=self.now())
        except DomainError:
            assert not order.pending_events
            return
        self.save(order)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), outcome=st.sampled_from(["refund", "release"]))
    def resolve_dispute(self, data: st.DataObject, outcome: str) -> None:
        order = self.orders[data.draw(st.integers(0, len(self.orders) - 1))]
        listing = next(x for x in self.listings if x.id == order.listing_id)
        self.attempt(
            lambda: escrow.resolve_dispute(
                order,
                outcome=outcome,
                resolver_id=ADMIN,
                note="decided",
                listing=listing,
                now=self.now(),
                **self._wallets_for(order),
            ),
            self._involved(order),
        )

    def _actor(self, order: Order, by: str) -> UUID:
        return {"buyer": order.buyer_id, "seller": order.seller_id}.get(by, ADMIN)

    @invariant()
    def money_is_conserved(self) -> None:
        total = sum(w.available.amount + w.held.amount for w in self.wallets.values())
        assert total == self.deposited - self.withdrawn
        assert all(
            w.available_amount >= 0 and all(h > 0 for h in w.holds.values()) for w in self.wallets.values()
        )

    @invariant()
    def no_balance_passes_the_bound(self) -> None:
        assert all(w.total.amount <= MAX_MINOR_UNITS for w in self.wallets.values())

    @invariant()
    def holds_match_open_escrows(self) -> None:
        held = sum(w.held.amount for w in self.wallets.values())
        assert held == sum(o.price.amount for o in self.orders if o.funds_held)

    @invariant()
    def versions_only_grow(self) -> None:
        for agg_id, agg in self.live.items():
            assert agg.version >= self.seen_versions.get(agg_id, 0)
            self.seen_versions[agg_id] = agg.version

    @invariant()
    def log_is_a_valid_hash_chain(self) -> None:
        assert verify_chain(self.log) is None

    def teardown(self) -> None:
        replayed: dict[UUID, Any] = {}
        for event in self.log:
            replayed[event.originator_id] = event.mutate(replayed.get(event.originator_id))
        assert set(replayed) == set(self.live)
        for agg_id, agg in self.live.items():
            assert replayed[agg_id].__dict__ == agg.__dict__


EscrowMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestEscrow = EscrowMachine.TestCase
