"""Random command sequences over wallets, listings and orders: money is conserved, logs replay exactly.

Three currencies, amounts anywhere up to `MAX_MINOR_UNITS` (no wallet ever holds more, and a move that
would overfill one is refused whole), unicode texts, and listings drafted and published between the
orders, payments and disputes of others. A wallet in another currency than the listing's is refused.
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
CURRENCIES = (EUR, "USD", "JPY")
OWNERS = [*USERS, CREATOR, PLATFORM_OWNER_ID]
# (seller index, kind, price, currency, royalty bps, creator) for the listings on sale from the start.
LISTINGS = [
    (0, "goods", 12_345, EUR, 0, None),
    (1, "dataset", 999, "USD", 500, CREATOR),
    (2, "goods", 1, "JPY", 1_000, USERS[3]),
    (3, "dataset", MAX_MINOR_UNITS, EUR, 0, None),
]

users = st.sampled_from(USERS)
# Mostly the right party acts, so that sequences get deep into the state machine; others test refusals.
mostly_seller = st.sampled_from(["seller", "seller", "seller", "buyer", "other"])
mostly_buyer = st.sampled_from(["buyer", "buyer", "buyer", "seller", "other"])
amounts = st.one_of(st.integers(min_value=1, max_value=30_000),
                    st.integers(min_value=MAX_MINOR_UNITS - 30_000, max_value=MAX_MINOR_UNITS),
                    st.integers(min_value=1, max_value=MAX_MINOR_UNITS))
currencies = st.sampled_from(CURRENCIES)
# Any unicode but lone surrogates (which no JSON text can carry): references, titles, reasons, notes.
texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


class EscrowMachine(RuleBasedStateMachine):
    """Drives the escrow use cases the way the command application would, saving each result atomically."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0
        self.log: list[Any] = []
        self.deposited = dict.fromkeys(CURRENCIES, 0)
        self.withdrawn = dict.fromkeys(CURRENCIES, 0)
        self.seen_versions: dict[UUID, int] = {}
        self.live: dict[UUID, ChainedAggregate] = {}
        self.wallets: dict[tuple[UUID, str], Wallet] = {}
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
        for owner in OWNERS:
            for currency in CURRENCIES:
                wallet = Wallet.open(owner_id=owner, currency=currency, now=self.now())
                self.wallets[owner, currency] = wallet
                self.save(wallet)
        for seller, kind, price, currency, royalty, creator in LISTINGS:
            self.publish_listing(USERS[seller], kind, Money(price, currency), royalty, creator, "item", "")

    def publish_listing(self, seller: UUID, kind: str, price: Money, royalty: int, creator: UUID | None,
                        title: str, description: str) -> None:
        item = Listing.draft(
            listing_id=UUID(int=1_000 + len(self.listings)), seller_id=seller, kind=kind, title=title,
            description=description, category="misc", price=price, creator_id=creator, royalty_bps=royalty,
            now=self.now(),
        )
        item.publish(now=self.now())
        self.listings.append(item)
        self.save(item)

    @rule(seller=users, kind=st.sampled_from(["goods", "dataset"]), amount=amounts, currency=currencies,
          creator=st.sampled_from([None, CREATOR, *USERS]), royalty=st.integers(0, 5_000), title=texts,
          description=texts)
    def list_another_item(self, seller: UUID, kind: str, amount: int, currency: str, creator: UUID | None,
                          royalty: int, title: str, description: str) -> None:
        """A listing drafted and published between other commands, in any currency, titled in any script."""
        self.publish_listing(seller, kind, Money(amount, currency), royalty if creator else 0, creator, title,
                             description)

    @rule(user=users, amount=amounts, currency=currencies, reference=texts)
    def deposit(self, user: UUID, amount: int, currency: str, reference: str) -> None:
        wallet = self.wallets[user, currency]
        room = MAX_MINOR_UNITS - wallet.total.amount
        try:
            wallet.deposit(amount=Money(amount, currency), reference=reference, now=self.now())
        except DomainError as refused:
            assert refused.code == "wallet.balance_limit" and amount > room
            assert not wallet.pending_events
            return
        self.deposited[currency] += amount
        self.save(wallet)

    @rule(user=users, amount=amounts, currency=currencies, reference=texts)
    def withdraw(self, user: UUID, amount: int, currency: str, reference: str) -> None:
        wallet = self.wallets[user, currency]
        try:
            wallet.withdraw(amount=Money(amount, currency), reference=reference, now=self.now())
        except DomainError:
            assert amount > wallet.available_amount and not wallet.pending_events
            return
        self.withdrawn[currency] += amount
        self.save(wallet)

    @rule(buyer=users, data=st.data(), fee_bps=st.integers(0, 3_000),
          wallet_currency=st.sampled_from(["listing's", "listing's", "listing's", *CURRENCIES]))
    def place_order(self, buyer: UUID, data: st.DataObject, fee_bps: int, wallet_currency: str) -> None:
        listing = self.listings[data.draw(st.integers(0, len(self.listings) - 1))]
        currency = listing.price.currency if wallet_currency == "listing's" else wallet_currency
        wallet = self.wallets[buyer, currency]
        order_id = UUID(int=10_000 + len(self.orders))
        if currency != listing.price.currency:  # a wallet in another currency never pays for it
            self.refused(lambda: escrow.place_order(order_id=order_id, listing=listing, buyer_id=buyer,
                                                    buyer_wallet=wallet, fee_bps=fee_bps, now=self.now()),
                         [listing, wallet])
            return

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

    def refused(self, use_case: Any, involved: list[ChainedAggregate]) -> None:
        """A use case that must be refused, leaving everything it touched as it was."""
        versions = [agg.version for agg in involved]
        try:
            use_case()
        except DomainError:
            assert [agg.version for agg in involved] == versions
            assert all(not agg.pending_events for agg in involved)
        else:
            raise AssertionError("a use case that must be refused went through")

    def _wallets_for(self, order: Order) -> dict[str, Any]:
        currency = order.price.currency
        return {
            "buyer_wallet": self.wallets[order.buyer_id, currency],
            "seller_wallet": self.wallets[order.seller_id, currency],
            "platform_wallet": self.wallets[PLATFORM_OWNER_ID, currency],
            "creator_wallet": self.wallets[order.creator_id, currency] if order.creator_id else None,
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
    @rule(data=st.data(), by=st.sampled_from(["buyer", "seller", "other"]), reason=texts)
    def cancel(self, data: st.DataObject, by: str, reason: str) -> None:
        order = self.orders[data.draw(st.integers(0, len(self.orders) - 1))]
        listing = next(x for x in self.listings if x.id == order.listing_id)
        self.attempt(
            lambda: escrow.cancel(
                order,
                by=self._actor(order, by),
                reason=reason,
                buyer_wallet=self.wallets[order.buyer_id, order.price.currency],
                listing=listing,
                now=self.now(),
            ),
            self._involved(order),
        )

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), by=st.sampled_from(["buyer", "seller", "other"]), reason=texts)
    def open_dispute(self, data: st.DataObject, by: str, reason: str) -> None:
        order = self.orders[data.draw(st.integers(0, len(self.orders) - 1))]
        try:
            order.open_dispute(by=self._actor(order, by), reason=reason, now=self.now())
        except DomainError:
            assert not order.pending_events
            return
        self.save(order)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), outcome=st.sampled_from(["refund", "release"]), note=texts)
    def resolve_dispute(self, data: st.DataObject, outcome: str, note: str) -> None:
        order = self.orders[data.draw(st.integers(0, len(self.orders) - 1))]
        listing = next(x for x in self.listings if x.id == order.listing_id)
        self.attempt(
            lambda: escrow.resolve_dispute(
                order,
                outcome=outcome,
                resolver_id=ADMIN,
                note=note,
                listing=listing,
                now=self.now(),
                **self._wallets_for(order),
            ),
            self._involved(order),
        )

    def _actor(self, order: Order, by: str) -> UUID:
        return {"buyer": order.buyer_id, "seller": order.seller_id}.get(by, ADMIN)

    @invariant()
    def money_is_conserved_in_each_currency(self) -> None:
        for currency in CURRENCIES:
            total = sum(w.available.amount + w.held.amount for (_, c), w in self.wallets.items() if c == currency)
            assert total == self.deposited[currency] - self.withdrawn[currency], currency
        assert all(
            w.available_amount >= 0 and all(h > 0 for h in w.holds.values()) for w in self.wallets.values()
        )

    @invariant()
    def no_balance_passes_the_bound(self) -> None:
        assert all(w.total.amount <= MAX_MINOR_UNITS for w in self.wallets.values())

    @invariant()
    def holds_match_open_escrows_in_each_currency(self) -> None:
        for currency in CURRENCIES:
            held = sum(w.held.amount for (_, c), w in self.wallets.items() if c == currency)
            assert held == sum(o.price.amount for o in self.orders if o.funds_held and o.price.currency == currency)

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
