"""No event the write side accepts is unappliable: random accepted commands through every projection handler.

Commands are driven through the domain (the aggregates and `domain.escrow`, which the command handlers call
once each), with amounts drawn up to the money bound (`MAX_MINOR_UNITS`); a command the domain refuses was
never accepted and is dropped. Every event accepted goes through its wire schema (`to_message`) and then
through each projection's `apply_batch` on real PostgreSQL (and the search index): none may dead-letter.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from commands.messages import to_message
from domain import escrow
from domain.errors import DomainError
from domain.licence import Licence
from domain.listing import Listing
from domain.money import Money
from domain.order import Order
from domain.trust import TrustScore
from domain.wallet import PLATFORM_OWNER_ID, Wallet
from infra.adapters.search import SearchPort
from infra.settings import Settings
from projections import checkpoints
from projections.config import ProjectionConfig
from projections.core import Record
from projections.engine import Projector
from projections.read_models.search import ensure_alias
from projections.read_models.vectors import EMBEDDING_DIM
from projections.registry import PROJECTIONS, make_projections
from schemas.base import MAX_MINOR_UNITS
from schemas.messages import header_value
from tests.support import require_services

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=UTC)
EUR = "EUR"
STORED_REF = "emb-stored"  # a vector a GPU worker stored before enriching (its ref is what the event names)
# Weighted to the bound: the amounts a projection could fail on are the large ones.
amounts = st.one_of(st.just(MAX_MINOR_UNITS), st.integers(MAX_MINOR_UNITS // 1000, MAX_MINOR_UNITS),
                    st.integers(1, MAX_MINOR_UNITS))


@dataclass
class Projectors:
    """Every projection bound to one isolated schema and alias; offsets keep growing across examples."""

    projectors: list[Projector]
    offsets: Iterator[int] = field(default_factory=itertools.count)
    positions: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    prefix: str = "p.bazaar."

    def apply(self, aggregates: list[Any]) -> set[str]:
        """Publish what the aggregates recorded (as the relay would), apply it everywhere; the schemas seen."""
        records = []
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                message = to_message(event, next(self.positions), self.prefix)
                records.append(Record(message.topic, 0, next(self.offsets), message.key, message.value,
                                      tuple(message.headers)))
        for projector in self.projectors:
            topics = set(projector.projection.topics(self.prefix))
            result = projector.apply_batch([r for r in records if r.topic in topics])
            assert result.dead == [], [letter.reason for letter in result.dead]
        return {header_value(record.headers, "schema_name") or "" for record in records}


@pytest.fixture(scope="module")
def projectors(settings: Settings) -> Iterator[Projectors]:
    require_services(settings, "postgres", "opensearch")
    tag = uuid.uuid4().hex[:10]
    config = ProjectionConfig(settings, topic_prefix="p.bazaar.", schema=f"p{tag}", index_alias=f"p{tag}-listings")
    port = SearchPort.from_settings(settings)
    ensure_alias(port, config.index_alias)
    built = []
    for projection in make_projections(config, port):
        conn = config.connect()
        checkpoints.ensure_schema(conn, config.schema)
        projector = Projector(projection, conn)
        projector.setup()
        built.append(projector)
    with built[0].conn.transaction():
        built[0].conn.execute("INSERT INTO embedding_store (ref, model_id, vector) VALUES (%s, 'minilm', %s)",
                              (STORED_REF, str([0.5] * EMBEDDING_DIM)))
    try:
        yield Projectors(built)
    finally:
        for projector in built:
            projector.conn.close()
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {config.schema} CASCADE")
        port.client.indices.delete(index=f"{config.index_alias}-v*", ignore_unavailable=True)


@dataclass
class Market:
    """A small marketplace the drawn commands act on; `now` ticks one second per command."""

    clock: datetime = T0
    users: dict[str, UUID] = field(default_factory=lambda: {n: uuid.uuid4() for n in ("buyer", "seller", "creator")})
    wallets: dict[str, Wallet] = field(default_factory=dict)
    listings: list[Listing] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    licences: list[Licence] = field(default_factory=list)
    trust: TrustScore | None = None

    def now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def payout(self, order: Order) -> dict[str, Wallet]:
        """The wallets a release or refund of `order` moves money between."""
        return {"buyer_wallet": self.wallets["buyer"], "seller_wallet": self.wallets["seller"],
                "platform_wallet": self.wallets["platform"], "creator_wallet": self.wallets["creator"]}

    @classmethod
    def with_wallets(cls) -> Market:
        """A market where every user and the platform has an (empty) EUR wallet."""
        m = cls()
        owners = {**m.users, "platform": PLATFORM_OWNER_ID}
        m.wallets = {name: Wallet.open(owner_id=owner, currency=EUR, now=m.now()) for name, owner in owners.items()}
        return m

    def aggregates(self) -> list[Any]:
        trust = [self.trust] if self.trust else []
        return [*self.wallets.values(), *self.listings, *self.orders, *self.licences, *trust]

    def listing_of(self, order: Order) -> Listing:
        return next(listing for listing in self.listings if listing.id == order.listing_id)


Command = Callable[[Market, st.DataObject], object]


class NothingToActOn(Exception):
    """The command needs a listing or an order and there is none yet."""


def pick(data: st.DataObject, items: list[Any]) -> Any:
    if not items:
        raise NothingToActOn
    return items[data.draw(st.integers(0, len(items) - 1))]  # by index: aggregates are not hashable


def deposit(m: Market, data: st.DataObject) -> list[Any]:
    wallet = m.wallets[data.draw(st.sampled_from(["buyer", "seller"]))]
    wallet.deposit(amount=Money(data.draw(amounts), EUR), reference="dep", now=m.now())
    return [wallet]


def withdraw(m: Market, data: st.DataObject) -> list[Any]:
    wallet = m.wallets[data.draw(st.sampled_from(["buyer", "seller"]))]
    wallet.withdraw(amount=Money(data.draw(amounts), EUR), reference="out", now=m.now())
    return [wallet]


def list_item(m: Market, data: st.DataObject) -> list[Any]:
    royalty = data.draw(st.sampled_from([0, 1, 2_500, 10_000]))
    listing = Listing.draft(listing_id=uuid.uuid4(), seller_id=m.users["seller"], kind="ai_model",
                            title="A model", description="", category="models", price=Money(data.draw(amounts), EUR),
                            creator_id=m.users["creator"] if royalty else None, royalty_bps=royalty, now=m.now())
    listing.publish(now=m.now())
    m.listings.append(listing)
    return [listing]


def reprice(m: Market, data: st.DataObject) -> list[Any]:
    listing = pick(data, m.listings)
    listing.change_price(price=Money(data.draw(amounts), EUR), now=m.now())
    return [listing]


def curate(m: Market, data: st.DataObject) -> None:
    """What sellers, workers and moderators do to a listing between drafting and selling it."""
    listing = pick(data, m.listings)
    step = data.draw(st.sampled_from(["revise", "enrich", "boost", "suspend", "withdraw", "relist"]))
    if step == "revise":
        listing.revise(title="A better model", attributes={"params": data.draw(amounts)}, now=m.now())
    elif step == "enrich":
        ref = data.draw(st.sampled_from([None, STORED_REF]))
        listing.enrich(model_id="minilm", model_version="1", embedding_ref=ref,
                       condition_score=data.draw(st.floats(0, 1)), image_hashes=["ab" * 32], now=m.now())
    elif step == "boost":
        listing.boost(until=m.clock + timedelta(days=data.draw(st.integers(1, 3650))), source="paid", now=m.now())
    elif step == "suspend":
        listing.suspend(reason="suspected fake", now=m.now())
        listing.reinstate(now=m.now())
    elif step == "withdraw":
        listing.withdraw(now=m.now())
    else:
        listing.relist(now=m.now())


def place_order(m: Market, data: st.DataObject) -> list[Any]:
    listing = pick(data, m.listings)
    result = escrow.place_order(order_id=uuid.uuid4(), listing=listing, buyer_id=m.users["buyer"],
                                buyer_wallet=m.wallets["buyer"], fee_bps=data.draw(st.sampled_from([0, 500, 10_000])),
                                now=m.now())
    m.orders.append(result.order)
    return list(result.aggregates)


def settle(m: Market, data: st.DataObject) -> list[Any]:
    """Ship and confirm, cancel, or dispute and resolve one of the orders."""
    order = pick(data, m.orders)
    how = data.draw(st.sampled_from(["deliver", "cancel", "refund", "release"]))
    if how == "cancel":
        return list(escrow.cancel(order, by=m.users["buyer"], reason="changed my mind",
                                  buyer_wallet=m.wallets["buyer"], listing=m.listing_of(order), now=m.now()).aggregates)
    if how == "deliver":
        order.ship(by=m.users["seller"], tracking_ref="T", now=m.now())
        return [order, *escrow.confirm_delivery(order, by=m.users["buyer"], now=m.now(), **m.payout(order)).aggregates]
    order.open_dispute(by=m.users["buyer"], reason="not as described", now=m.now())
    return [order, *escrow.resolve_dispute(order, outcome=how, resolver_id=uuid.uuid4(), note="decided",
                                           listing=m.listing_of(order), now=m.now(), **m.payout(order)).aggregates]


def licence(m: Market, data: st.DataObject) -> list[Any]:
    listing = pick(data, m.listings)
    issued = Licence.issue(licence_id=uuid.uuid4(), listing_id=listing.id, licensee_id=m.users["buyer"],
                           kind="usage_metered", quota=data.draw(amounts), now=m.now())
    m.licences.append(issued)
    issued.record_usage(units=data.draw(amounts), at=m.clock, now=m.now())
    issued.renew(added_quota=data.draw(amounts), now=m.now())
    ending = data.draw(st.sampled_from(["none", "revoke", "expire"]))
    if ending == "revoke":
        issued.revoke(reason="abuse", now=m.now())
    elif ending == "expire":
        issued.expire(now=m.now())
    return [issued]


def trust_signal(m: Market, data: st.DataObject) -> list[Any]:
    if m.trust is None:
        m.trust = TrustScore.start(user_id=m.users["seller"], now=m.now())
    m.trust.record_signal(kind="review", ref=uuid.uuid4().hex, at=m.clock, stars=data.draw(st.integers(1, 5)),
                          now=m.now())
    if data.draw(st.booleans()):
        m.trust.recompute(now=m.now())
    return [m.trust]


# Orders and their endings are drawn more often: they need a funded buyer and a listing first.
COMMANDS: list[Command] = [deposit, withdraw, list_item, reprice, curate, place_order, place_order, settle, settle,
                           licence, trust_signal]


def open_market(data: st.DataObject) -> Market:
    """Wallets for everyone, a funded buyer and one listing: most drawn commands then have something to act on."""
    m = Market.with_wallets()
    m.wallets["buyer"].deposit(amount=Money(data.draw(amounts), EUR), reference="seed", now=m.now())
    list_item(m, data)
    return m


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_event_the_write_side_accepts_is_applied_by_every_projection(
    projectors: Projectors, data: st.DataObject
) -> None:
    market = open_market(data)
    for command in data.draw(st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=15)):
        # Refused by the domain (it then records nothing), or not possible yet: not an accepted command.
        with contextlib.suppress(DomainError, NothingToActOn):
            command(market, data)
    # What the successful domain calls recorded is what their handlers would have saved (grouped by aggregate,
    # each aggregate's events in order: all that a topic keyed by aggregate id promises).
    projectors.apply(market.aggregates())


def tour_at_the_bound(m: Market) -> None:
    """Every event a projection handles, once, with amounts at MAX_MINOR_UNITS wherever the domain allows."""
    buyer = m.wallets["buyer"]
    buyer.deposit(amount=Money(MAX_MINOR_UNITS, EUR), reference="all of it", now=m.now())
    listing = Listing.draft(listing_id=uuid.uuid4(), seller_id=m.users["seller"], kind="goods", title="The camera",
                            description="", category="cameras", price=Money(MAX_MINOR_UNITS, EUR),
                            creator_id=m.users["creator"], royalty_bps=2_500, now=m.now())
    m.listings.append(listing)
    listing.revise(title="The camera, boxed", now=m.now())
    listing.publish(now=m.now())
    listing.change_price(price=Money(MAX_MINOR_UNITS, EUR), now=m.now())
    listing.enrich(model_id="minilm", model_version="1", embedding_ref=STORED_REF, condition_score=1.0,
                   image_hashes=["ab" * 32], now=m.now())
    listing.boost(until=m.clock + timedelta(days=3650), source="paid", now=m.now())
    listing.suspend(reason="suspected fake", now=m.now())
    listing.reinstate(now=m.now())
    order = escrow.place_order(order_id=uuid.uuid4(), listing=listing, buyer_id=m.users["buyer"], buyer_wallet=buyer,
                               fee_bps=500, now=m.now()).order
    m.orders.append(order)
    escrow.cancel(order, by=m.users["buyer"], reason="changed my mind", buyer_wallet=buyer, listing=listing,
                  now=m.now())
    for ending in ("refund", "deliver"):  # a refund relists the listing; a delivery sells it for good
        order = escrow.place_order(order_id=uuid.uuid4(), listing=listing, buyer_id=m.users["buyer"],
                                   buyer_wallet=buyer, fee_bps=500, now=m.now()).order
        m.orders.append(order)
        if ending == "deliver":
            order.ship(by=m.users["seller"], tracking_ref="T", now=m.now())
            escrow.confirm_delivery(order, by=m.users["buyer"], now=m.now(), **m.payout(order))
        else:
            order.open_dispute(by=m.users["buyer"], reason="not as described", now=m.now())
            escrow.resolve_dispute(order, outcome="refund", resolver_id=uuid.uuid4(), note="refund", listing=listing,
                                   now=m.now(), **m.payout(order))
    m.wallets["creator"].withdraw(amount=m.wallets["creator"].available, reference="out", now=m.now())
    unsold = Listing.draft(listing_id=uuid.uuid4(), seller_id=m.users["seller"], kind="goods", title="A lamp",
                           description="", category="lamps", price=Money(1, EUR), now=m.now())
    m.listings.append(unsold)
    unsold.withdraw(now=m.now())
    metered = Licence.issue(licence_id=uuid.uuid4(), listing_id=listing.id, licensee_id=m.users["buyer"],
                            kind="usage_metered", quota=MAX_MINOR_UNITS, now=m.now())
    metered.record_usage(units=MAX_MINOR_UNITS, at=m.clock, now=m.now())
    metered.renew(added_quota=1, now=m.now())
    metered.revoke(reason="abuse", now=m.now())
    timed = Licence.issue(licence_id=uuid.uuid4(), listing_id=listing.id, licensee_id=m.users["buyer"],
                          kind="time_limited", expires_at=m.clock + timedelta(seconds=2), now=m.now())
    m.now()
    timed.expire(now=m.now())
    m.licences += [metered, timed]
    m.trust = TrustScore.start(user_id=m.users["seller"], now=m.now())
    m.trust.record_signal(kind="review", ref="r1", at=m.clock, stars=5, now=m.now())
    m.trust.recompute(now=m.now())


def test_a_tour_of_every_handled_event_at_the_bound_applies_everywhere(projectors: Projectors) -> None:
    market = Market.with_wallets()
    tour_at_the_bound(market)
    seen = projectors.apply(market.aggregates())
    handled = {event.schema_name for cls in PROJECTIONS for event in cls.handlers}
    assert handled <= seen, sorted(handled - seen)
