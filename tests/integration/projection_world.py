"""The projection tests' world: a scripted marketplace, a pure fold of its events, and isolated stores.

(Over 400 lines: the scripted marketplace and the fold that states what every read model must hold are one spec.)

Each world publishes the marketplace to its own topics (`t<hex>.bazaar.*`), projects into PostgreSQL schemas
and search aliases of its own, and drops all of them at the end: the live `rm_*` tables are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from psycopg.rows import dict_row

from commands.messages import to_message
from domain import escrow
from domain.licence import Licence
from domain.listing import Listing
from domain.money import Money
from domain.trust import TrustScore
from domain.wallet import PLATFORM_OWNER_ID, Wallet
from infra.adapters.kafka import make_admin, make_producer
from infra.adapters.search import SearchPort
from infra.settings import Settings
from projections.config import ProjectionConfig
from projections.status import status
from schemas.base import EventSchema
from schemas.messages import EventMessage, decode_event
from schemas.names import DOMAIN_AGGREGATES, PROJECTIONS_DLQ_TOPIC, domain_topic, topic
from tests.support import require_services

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EUR = "EUR"
DIM = 384


# -- the scripted marketplace ------------------------------------------------------------------------------


@dataclass
class Script:
    """Domain aggregates acting in order; every save collects their events with the next notification id."""

    messages: list[EventMessage] = field(default_factory=list)
    clock: datetime = T0
    prefix: str = "bazaar."

    def now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def save(self, *aggregates: Any) -> None:
        for aggregate in aggregates:
            if aggregate is None:
                continue
            for event in aggregate.collect_events():
                self.messages.append(to_message(event, len(self.messages) + 1, self.prefix))


def scripted_run(prefix: str) -> tuple[list[EventMessage], dict[str, UUID]]:
    """Users with wallets and trust, listings of every kind, released/refunded/disputed orders, licences."""
    s = Script(prefix=prefix)
    ids = {name: uuid.uuid4() for name in ("seller1", "seller2", "buyer1", "buyer2", "creator")}
    wallets = {name: Wallet.open(owner_id=ids[name], currency=EUR, now=s.now()) for name in ids}
    platform = Wallet.open(owner_id=PLATFORM_OWNER_ID, currency=EUR, now=s.now())
    for name in ("buyer1", "buyer2"):
        wallets[name].deposit(amount=Money(100_000, EUR), reference=f"dep-{name}", now=s.now())
    s.save(platform, *wallets.values())

    def draft(seller: str, kind: str, title: str, category: str, price: int, **kw: Any) -> Listing:
        listing = Listing.draft(listing_id=uuid.uuid4(), seller_id=ids[seller], kind=kind, title=title,
                                description=f"{title} in good shape", category=category,
                                price=Money(price, EUR), now=s.now(), **kw)
        ids[title] = listing.id
        return listing

    camera = draft("seller1", "goods", "Vintage camera Leica", "cameras", 12_000, attributes={"mm": 35})
    model = draft("seller2", "ai_model", "Sentiment model", "models", 5_000, creator_id=ids["creator"],
                  royalty_bps=1_000)
    dataset = draft("seller2", "dataset", "Street photos dataset", "datasets", 5_000)
    lens = draft("seller1", "goods", "Zoom lens Nikon", "cameras", 8_000)
    tripod = draft("seller1", "goods", "Carbon tripod", "accessories", 3_000)
    for listing in (camera, model, lens, tripod):
        listing.publish(now=s.now())
    lens.change_price(price=Money(7_500, EUR), now=s.now())
    lens.enrich(model_id="minilm", model_version="1", embedding_ref="emb-lens", condition_score=0.75,
                image_hashes=["ab" * 32], now=s.now())
    camera.enrich(model_id="minilm", model_version="1", embedding_ref="emb-camera", condition_score=0.5,
                  now=s.now())
    lens.boost(until=T0 + timedelta(days=3), source="paid", now=s.now())
    lens.suspend(reason="suspected fake", now=s.now())
    lens.reinstate(now=s.now())
    model.revise(title="Sentiment model v2", now=s.now())
    tripod.withdraw(now=s.now())
    s.save(camera, model, dataset, lens, tripod)

    def pay(buyer: str, listing: Listing) -> Any:
        result = escrow.place_order(order_id=uuid.uuid4(), listing=listing, buyer_id=ids[buyer],
                                    buyer_wallet=wallets[buyer], fee_bps=500, now=s.now())
        s.save(*result.aggregates)
        return result.order

    def payout(order: Any) -> dict[str, Any]:
        return {"buyer_wallet": wallets[_owner(ids, order.buyer_id)],
                "seller_wallet": wallets[_owner(ids, order.seller_id)], "platform_wallet": platform,
                "creator_wallet": wallets["creator"]}

    released = pay("buyer1", camera)
    released.ship(by=ids["seller1"], tracking_ref="TR1", now=s.now())
    s.save(released)
    s.save(*escrow.confirm_delivery(released, by=ids["buyer1"], now=s.now(), **payout(released)).aggregates)
    cancelled = pay("buyer2", model)
    s.save(*escrow.cancel(cancelled, by=ids["buyer2"], reason="changed my mind", buyer_wallet=wallets["buyer2"],
                          listing=model, now=s.now()).aggregates)
    refunded = pay("buyer1", lens)
    refunded.open_dispute(by=ids["buyer1"], reason="not as described", now=s.now())
    s.save(refunded)
    s.save(*escrow.resolve_dispute(refunded, outcome="refund", resolver_id=ids["seller2"], note="refund it",
                                   listing=lens, now=s.now(), **payout(refunded)).aggregates)
    royalty = pay("buyer2", model)
    royalty.open_dispute(by=ids["buyer2"], reason="slow", now=s.now())
    s.save(royalty)
    s.save(*escrow.resolve_dispute(royalty, outcome="release", resolver_id=ids["seller1"], note="fine",
                                   listing=model, now=s.now(), **payout(royalty)).aggregates)

    metered = Licence.issue(licence_id=uuid.uuid4(), listing_id=model.id, licensee_id=ids["buyer2"],
                            kind="usage_metered", quota=100, order_id=royalty.id, now=s.now())
    metered.record_usage(units=30, at=s.clock, now=s.now())
    metered.renew(added_quota=50, now=s.now())
    timed = Licence.issue(licence_id=uuid.uuid4(), listing_id=dataset.id, licensee_id=ids["buyer1"],
                          kind="time_limited", expires_at=T0 + timedelta(days=30), now=s.now())
    timed.renew(expires_at=T0 + timedelta(days=60), now=s.now())
    timed.revoke(reason="abuse", now=s.now())
    s.save(metered, timed)

    trust1 = TrustScore.start(user_id=ids["seller1"], now=s.now())
    trust1.record_signal(kind="review", ref="r1", at=s.clock, stars=5, now=s.now())
    trust1.record_signal(kind="completed_order", ref=str(released.id), at=s.clock, now=s.now())
    trust2 = TrustScore.start(user_id=ids["seller2"], now=s.now())
    trust2.record_signal(kind="dispute_outcome", ref=str(refunded.id), at=s.clock, outcome="lost", now=s.now())
    s.save(trust1, trust2)
    return s.messages, ids


def _owner(ids: dict[str, UUID], user_id: UUID) -> str:
    return next(name for name, value in ids.items() if value == user_id)


# -- the pure fold -----------------------------------------------------------------------------------------


def fold(events: list[tuple[EventSchema, int]], stored_refs: set[str]) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every read model as dicts, computed from the event schemas alone (no projection code)."""
    models: dict[str, dict[Any, dict[str, Any]]] = defaultdict(dict)
    listing_meta: dict[UUID, dict[str, Any]] = {}
    order_meta: dict[UUID, dict[str, Any]] = {}
    trust_user: dict[UUID, UUID] = {}
    for event, position in events:
        base = {"updated_at": event.timestamp, "version": event.version, "position": position}
        name, e, key = event.schema_name, event, event.aggregate_id
        if event.aggregate == "listing":
            _fold_listing(models["rm_listings"], e, base)
            _fold_dashboard_listing(models["rm_seller_dashboard"], listing_meta, e)
            if name == "ListingEnriched" and e.embedding_ref in stored_refs:
                models["rm_listing_vectors"][key] = {"ref": e.embedding_ref, "model_id": e.model_id,
                                                     "model_version": e.model_version, **base}
        elif event.aggregate == "order":
            _fold_order(models["rm_orders"], e, base)
            _fold_dashboard_order(models["rm_seller_dashboard"], order_meta, e)
        elif event.aggregate == "wallet":
            _fold_wallet(models["rm_wallets"], e, base)
        elif event.aggregate == "licence":
            _fold_licence(models["rm_licences"], e, base)
        elif event.aggregate == "trust":
            if name == "TrustScoreStarted":
                trust_user[key] = e.user_id
                models["rm_trust"][e.user_id] = {"score": e.score, "formula_version": e.formula_version,
                                                 "signals": 0, **base}
                continue
            row = models["rm_trust"][trust_user[key]]
            if name == "TrustSignalRecorded":
                row.update(signals=row["signals"] + 1, **base)
            elif name == "TrustScoreRecomputed":
                row.update(score=e.score, formula_version=e.formula_version, signals=e.signal_count, **base)
    for row in models["rm_seller_dashboard"].values():
        published = row["listings_published"]
        row["conversion"] = round(row["orders_completed"] / published, 4) if published else 0.0
    return models


def _fold_listing(rows: dict[Any, dict[str, Any]], e: Any, base: dict[str, Any]) -> None:
    name = e.schema_name
    if name == "ListingDrafted":
        rows[e.aggregate_id] = {
            "seller_id": e.seller_id, "kind": e.kind, "title": e.title, "description": e.description,
            "category": e.category, "price_amount": e.price_amount, "currency": e.currency, "status": "draft",
            "attributes": e.attributes, "creator_id": e.creator_id, "royalty_bps": e.royalty_bps,
            "condition_score": None, "model_id": None, "model_version": None, "image_hashes": [],
            "boosted_until": None, "suspended_reason": None, "sold_order_id": None,
            "created_at": e.timestamp, **base}
        return
    changes: dict[str, Any] = {
        "ListingRevised": lambda: {"title": e.title, "description": e.description, "category": e.category,
                                   "attributes": e.attributes},
        "ListingPublished": lambda: {"status": "published"},
        "ListingPriceChanged": lambda: {"price_amount": e.price_amount, "currency": e.currency},
        "ListingEnriched": lambda: {"condition_score": e.condition_score, "image_hashes": e.image_hashes,
                                    "model_id": e.model_id, "model_version": e.model_version},
        "ListingBoosted": lambda: {"boosted_until": e.until},
        "ListingSuspended": lambda: {"status": "suspended", "suspended_reason": e.reason},
        "ListingReinstated": lambda: {"status": "published", "suspended_reason": None},
        "ListingSold": lambda: {"status": "sold", "sold_order_id": e.order_id},
        "ListingRelisted": lambda: {"status": "published", "sold_order_id": None},
        "ListingWithdrawn": lambda: {"status": "withdrawn"},
    }
    rows[e.aggregate_id].update(changes[name](), **base)


def _fold_order(rows: dict[Any, dict[str, Any]], e: Any, base: dict[str, Any]) -> None:
    name = e.schema_name
    if name == "OrderPlaced":
        rows[e.aggregate_id] = {
            "buyer_id": e.buyer_id, "seller_id": e.seller_id, "listing_id": e.listing_id,
            "price_amount": e.price_amount, "currency": e.currency, "fee_amount": 0, "royalty_amount": 0,
            "seller_amount": 0, "status": "placed", "escrow": "pending", "dispute_reason": None,
            "resolution": None, "created_at": e.timestamp, **base}
        return
    changes = {
        "OrderFundsHeld": lambda: {"status": "funds_held", "escrow": "held"},
        "OrderShipped": lambda: {"status": "shipped"},
        "OrderDeliveryConfirmed": lambda: {"status": "delivered"},
        "OrderReleased": lambda: {"status": "released", "escrow": "released", "seller_amount": e.seller_amount,
                                  "fee_amount": e.fee_amount, "royalty_amount": e.royalty_amount},
        "OrderCancelled": lambda: {"status": "cancelled"},
        "OrderRefunded": lambda: {"status": "refunded", "escrow": "refunded"},
        "OrderDisputeOpened": lambda: {"status": "disputed", "dispute_reason": e.reason},
        "OrderDisputeResolved": lambda: {"status": "resolved", "resolution": e.outcome},
    }
    rows[e.aggregate_id].update(changes[name](), **base)


def _fold_wallet(rows: dict[Any, dict[str, Any]], e: Any, base: dict[str, Any]) -> None:
    if e.schema_name == "WalletOpened":
        rows[e.aggregate_id] = {"owner_id": e.owner_id, "currency": e.currency, "available": 0, "held": 0, **base}
        return
    moves = {"WalletDeposited": (1, 0), "WalletHeld": (-1, 1), "WalletHoldReleased": (0, -1),
             "WalletCredited": (1, 0), "WalletWithdrawn": (-1, 0)}
    available, held = moves[e.schema_name]
    row = rows[e.aggregate_id]
    row.update(available=row["available"] + available * e.amount, held=row["held"] + held * e.amount, **base)


def _fold_licence(rows: dict[Any, dict[str, Any]], e: Any, base: dict[str, Any]) -> None:
    name = e.schema_name
    if name == "LicenceIssued":
        rows[e.aggregate_id] = {"listing_id": e.listing_id, "licensee_id": e.licensee_id, "kind": e.kind,
                                "status": "active", "expires_at": e.expires_at, "quota": e.quota, "used": 0,
                                "issued_at": e.timestamp, **base}
        return
    row = rows[e.aggregate_id]
    if name == "LicenceUsageRecorded":
        row["used"] += e.units
    elif name == "LicenceRenewed":
        if e.expires_at is not None:
            row["expires_at"] = e.expires_at
        if e.added_quota is not None and row["quota"] is not None:
            row["quota"] += e.added_quota
        row["status"] = "active"
    elif name == "LicenceRevoked":
        row["status"] = "revoked"
    elif name == "LicenceExpired":
        row["status"] = "expired"
    row.update(base)


def _dash_row(rows: dict[Any, dict[str, Any]], seller: UUID, currency: str, at: datetime) -> dict[str, Any]:
    row = rows.setdefault((seller, currency), {
        "listings_total": 0, "listings_published": 0, "orders_total": 0, "orders_completed": 0,
        "orders_refunded": 0, "revenue_amount": 0, "fees_amount": 0})
    row["updated_at"] = max(row.get("updated_at", at), at)  # two topics: the latest event time seen
    return row


def _fold_dashboard_listing(rows: dict[Any, dict[str, Any]], meta: dict[UUID, dict[str, Any]], e: Any) -> None:
    if e.schema_name == "ListingDrafted":
        meta[e.aggregate_id] = {"seller": e.seller_id, "currency": e.currency, "published": False}
        _dash_row(rows, e.seller_id, e.currency, e.timestamp)["listings_total"] += 1
    elif e.schema_name == "ListingPublished" and not meta[e.aggregate_id]["published"]:
        listing = meta[e.aggregate_id]
        listing["published"] = True
        _dash_row(rows, listing["seller"], listing["currency"], e.timestamp)["listings_published"] += 1


def _fold_dashboard_order(rows: dict[Any, dict[str, Any]], meta: dict[UUID, dict[str, Any]], e: Any) -> None:
    if e.schema_name == "OrderPlaced":
        meta[e.aggregate_id] = {"seller": e.seller_id, "currency": e.currency}
        _dash_row(rows, e.seller_id, e.currency, e.timestamp)["orders_total"] += 1
        return
    if e.schema_name not in ("OrderReleased", "OrderRefunded"):
        return
    order = meta[e.aggregate_id]
    row = _dash_row(rows, order["seller"], order["currency"], e.timestamp)
    if e.schema_name == "OrderReleased":
        row["orders_completed"] += 1
        row["revenue_amount"] += e.seller_amount
        row["fees_amount"] += e.fee_amount
    else:
        row["orders_refunded"] += 1


# -- reading the stores ------------------------------------------------------------------------------------

KEYS = {"rm_listings": "listing_id", "rm_orders": "order_id", "rm_wallets": "wallet_id",
        "rm_licences": "licence_id", "rm_trust": "user_id", "rm_listing_vectors": "listing_id"}


def read_tables(conn: psycopg.Connection[Any]) -> dict[str, dict[Any, dict[str, Any]]]:
    """The read tables as the fold shapes them (columns the fold does not compute are left out)."""
    tables: dict[str, dict[Any, dict[str, Any]]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for table, key in KEYS.items():
            rows = cur.execute(f"SELECT * FROM {table}").fetchall()
            tables[table] = {row.pop(key): _normalise(table, row) for row in rows}
        rows = cur.execute("SELECT * FROM rm_seller_dashboard").fetchall()
        tables["rm_seller_dashboard"] = {
            (row.pop("seller_id"), row.pop("currency")): {**row, "conversion": round(row["conversion"], 4)}
            for row in rows}
    conn.rollback()
    return tables


def _normalise(table: str, row: dict[str, Any]) -> dict[str, Any]:
    if table == "rm_trust":
        row.pop("trust_id")
    if table == "rm_listing_vectors":
        row["ref"] = _REF_BY_FIRST[float(row.pop("embedding")[0])]
    if row.get("condition_score") is not None:
        row["condition_score"] = float(row["condition_score"])
    return row


def expected(world: World) -> dict[str, dict[Any, dict[str, Any]]]:
    return dict(fold(world.events(), set(world.vectors)))


def assert_models_equal(conn: psycopg.Connection[Any], world: World) -> None:
    actual, wanted = read_tables(conn), expected(world)
    for table in [*KEYS, "rm_seller_dashboard"]:
        assert actual[table] == wanted.get(table, {}), table
    assert len(actual["rm_listings"]) >= 5 and len(actual["rm_orders"]) == 4


def search_docs(port: SearchPort, alias: str) -> dict[str, tuple[int, dict[str, Any]]]:
    port.refresh(alias)
    response = port.client.search(index=alias, body={"query": {"match_all": {}}, "size": 1000, "version": True})
    return {hit["_id"]: (hit["_version"], hit["_source"]) for hit in response["hits"]["hits"]}


def assert_search_equal(port: SearchPort, alias: str, world: World) -> None:
    docs = search_docs(port, alias)
    listings = expected(world)["rm_listings"]
    assert set(docs) == {str(k) for k in listings}
    for listing_id, row in listings.items():
        version, doc = docs[str(listing_id)]
        assert version == row["version"]
        assert (doc["title"], doc["status"], doc["price_amount"], doc["category"]) == (
            row["title"], row["status"], row["price_amount"], row["category"])


# -- the world: isolated topics, schema and alias ----------------------------------------------------------

_REF_BY_FIRST: dict[float, str] = {}


@dataclass
class World:
    """One test module's isolated topics, schemas (one per suffix) and aliases, and the messages published."""

    settings: Settings
    tag: str
    suffixes: tuple[str, ...] = ("",)
    messages: list[EventMessage] = field(default_factory=list)
    vectors: dict[str, list[float]] = field(default_factory=dict)
    ids: dict[str, UUID] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"t{self.tag}.bazaar."

    def config(self, suffix: str = "", **kw: Any) -> ProjectionConfig:
        return ProjectionConfig(self.settings, topic_prefix=self.prefix, schema=f"t{self.tag}{suffix}",
                                index_alias=f"t{self.tag}{suffix}-bazaar-listings", **kw)

    def events(self) -> list[tuple[EventSchema, int]]:
        decoded = []
        for message in self.messages:
            decoded.append((decode_event(message.value, message.headers), int(message.header("notification_id"))))
        return decoded

    def publish(self, messages: list[EventMessage]) -> None:
        producer = make_producer(self.settings)
        for message in messages:
            producer.send(message.topic, key=message.key, value=message.value, headers=message.headers)
        producer.flush()
        producer.close()


def _vector(seed: int) -> list[float]:
    return [float(seed)] + [((seed * 31 + i) % 97) / 97.0 for i in range(DIM - 1)]


@contextmanager
def open_world(settings: Settings, suffixes: tuple[str, ...]) -> Iterator[World]:
    """Topics holding the scripted marketplace, and an empty schema (with stored vectors) per suffix."""
    require_services(settings, "postgres", "kafka", "opensearch")
    w = World(settings, uuid.uuid4().hex[:10], suffixes)
    admin = make_admin(settings)
    topics = [domain_topic(a, w.prefix) for a in DOMAIN_AGGREGATES] + [topic(PROJECTIONS_DLQ_TOPIC, w.prefix)]
    admin.create_topics([NewTopic(t, 3, 1) for t in topics])
    w.vectors = {"emb-lens": _vector(1), "emb-camera": _vector(2)}
    _REF_BY_FIRST.update({1.0: "emb-lens", 2.0: "emb-camera"})
    try:
        for suffix in suffixes:
            _store_vectors(settings, f"t{w.tag}{suffix}", w.vectors)
        w.messages, w.ids = scripted_run(w.prefix)
        w.publish(w.messages)
        yield w
    finally:
        _drop_world(settings, w, topics, admin)


def _store_vectors(settings: Settings, schema: str, vectors: dict[str, list[float]]) -> None:
    """What a GPU worker does before sending EnrichListing: store the vector under its ref."""
    with psycopg.connect(settings.pg_conninfo) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.embedding_store (ref text PRIMARY KEY, model_id text NOT NULL,"
                     f" vector vector({DIM}) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
        for ref, vector in vectors.items():
            conn.execute(f"INSERT INTO {schema}.embedding_store (ref, model_id, vector) VALUES (%s, 'minilm', %s)",
                         (ref, json.dumps(vector)))


def _drop_world(settings: Settings, w: World, topics: list[str], admin: Any) -> None:
    port = SearchPort.from_settings(settings)
    for suffix in w.suffixes:
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS t{w.tag}{suffix} CASCADE")
        port.client.indices.delete(index=f"t{w.tag}{suffix}-bazaar-listings-v*", ignore_unavailable=True)
    admin.delete_topics(topics)
    admin.close()


def conn_for(config: ProjectionConfig) -> psycopg.Connection[Any]:
    return config.connect()


def to_message_at(message: EventMessage, notification_id: int) -> EventMessage:
    headers = [(k, str(notification_id).encode() if k == "notification_id" else v) for k, v in message.headers]
    return EventMessage(message.topic, message.key, message.value, headers)


def read_dlq(settings: Settings, dlq_topic: str) -> list[dict[str, str]]:
    """The headers of every dead letter on the topic."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    tps = [TopicPartition(dlq_topic, p) for p in range(3)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(tps)
    letters: list[dict[str, str]] = []
    deadline = time.monotonic() + 10
    while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            letters.extend({k: v.decode() for k, v in r.headers} for r in records)
    consumer.close()
    return letters


def run_projections_process(config: ProjectionConfig, batch_size: int = 1) -> subprocess.Popen[bytes]:
    """`run_projections` (the Faust worker) in a child process on the config's topics, schema and alias."""
    code = (
        "import sys; from infra.settings import get_settings; from projections.cli import run_projections;"
        f"run_projections(get_settings(), topic_prefix={config.topic_prefix!r}, schema={config.schema!r},"
        f" index_alias={config.index_alias!r}, batch_size={batch_size})"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def applied_and_lag(config: ProjectionConfig) -> tuple[int, int]:
    """Offsets applied by every projection of the config, and their total lag in events."""
    states = status(config)
    return sum(sum(s.offsets.values()) for s in states), sum(s.lag_events for s in states)


def wait_until_caught_up(config: ProjectionConfig, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while applied_and_lag(config)[1] > 0 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    stderr = process.stderr.read() if process.poll() is not None and process.stderr else b""
    assert applied_and_lag(config)[1] == 0, stderr.decode()


def checkpointed(conn: psycopg.Connection[Any], schema: str) -> int:
    """Offsets committed so far by every projection of the schema (0 before its tables exist)."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{schema}.projection_checkpoints",)).fetchone()
    if not (row and row[0]):
        return 0
    total = conn.execute(f"SELECT coalesce(sum(next_offset), 0) FROM {schema}.projection_checkpoints").fetchone()
    return int(total[0]) if total else 0
