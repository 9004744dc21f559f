"""Projections on the real services: every read model equals a pure fold over the published events.

The world (tests/integration/projection_world.py) publishes a scripted marketplace to topics of its own and
projects into schemas and aliases of its own; live consumption runs the Faust worker in a child process.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from commands.relay import POSITIONS_DDL
from domain.listing import Listing
from domain.money import Money
from infra.settings import Settings
from projections.catch_up import catch_up
from projections.checkpoints import DEAD_LETTERS
from projections.config import ProjectionConfig
from projections.rebuild import rebuild
from projections.registry import PROJECTIONS, projection_names, projection_topics
from projections.status import status
from read_api.app import create_app
from read_api.config import ReadApiConfig
from read_api.consistency import KafkaEndOffsets, LogWatermark
from schemas.messages import EventMessage
from schemas.names import RELAY_NAME, RELAY_POSITIONS_TABLE, domain_topic
from tests.integration.projection_world import (
    EUR,
    KEYS,
    T0,
    Script,
    World,
    applied_and_lag,
    assert_models_equal,
    assert_search_equal,
    checkpointed,
    expected,
    open_world,
    read_dlq,
    read_tables,
    run_projections_process,
    search_docs,
    to_message_at,
    wait_until_caught_up,
)

pytestmark = pytest.mark.integration
# main schema, the Faust kill test, status lag, and a live build and a rebuild of the same log
SUFFIXES = ("", "kf", "lag", "live", "rb")


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[World]:
    with open_world(settings, SUFFIXES) as w:
        yield w


@pytest.fixture(scope="module")
def caught_up(world: World) -> World:
    catch_up(world.config())
    return world


def conn_for(config: ProjectionConfig) -> psycopg.Connection[Any]:
    return config.connect()


# -- tests -------------------------------------------------------------------------------------------------


def test_every_read_model_equals_the_fold(caught_up: World) -> None:
    config = caught_up.config()
    with conn_for(config) as conn:
        assert_models_equal(conn, caught_up)
    assert_search_equal(config.search_port(), config.index_alias, caught_up)
    lag = {s.name: s.lag_events for s in status(config)}
    assert lag == dict.fromkeys(projection_names(), 0)


def test_replayed_duplicates_change_nothing(caught_up: World) -> None:
    config = caught_up.config()
    with conn_for(config) as conn:
        before = read_tables(conn)
    caught_up.publish(caught_up.messages)  # every event again, at new offsets
    catch_up(config)
    with conn_for(config) as conn:
        assert read_tables(conn) == before
    assert_search_equal(config.search_port(), config.index_alias, caught_up)


def test_poison_goes_to_the_dlq_and_the_consumer_carries_on(caught_up: World) -> None:
    config = caught_up.config()
    garbage = EventMessage(f"{caught_up.prefix}listing", b"x", b"{not json",
                           [("schema_name", b"ListingPublished"), ("schema_version", b"1")])
    s = Script(prefix=caught_up.prefix, clock=T0 + timedelta(days=1))
    listing = Listing.draft(listing_id=uuid.uuid4(), seller_id=caught_up.ids["seller1"], kind="goods",
                            title="Poisoned lamp", description="", category="lamps", price=Money(900, EUR),
                            now=s.now())
    listing.enrich(model_id="minilm", model_version="1", embedding_ref="emb-missing", now=s.now())
    listing.publish(now=s.now())
    s.messages = []
    s.save(listing)
    base = len(caught_up.messages)
    follow_up = [to_message_at(m, base + i + 1) for i, m in enumerate(s.messages)]
    caught_up.publish([garbage, *follow_up])
    caught_up.messages.extend(follow_up)
    catch_up(config)
    letters = read_dlq(caught_up.settings, config.dlq_topic)
    reasons = {(h["dlq_projection"], h.get("schema_name")): h["dlq_reason"] for h in letters}
    assert "ListingPublished v1" in reasons[("listings", "ListingPublished")]
    assert "emb-missing" in reasons[("vectors", "ListingEnriched")]
    enriched = int(follow_up[1].header("notification_id") or 0)
    with conn_for(config) as conn:
        assert_models_equal(conn, caught_up)  # the events after the poison were applied
        recorded = conn.execute(f"SELECT projection, notification_id, reason FROM {DEAD_LETTERS}"
                                " WHERE notification_id IS NOT NULL").fetchall()
    assert [(p, n) for p, n, _ in recorded] == [("vectors", enriched)]
    assert "emb-missing" in recorded[0][2]
    assert all(s.lag_events == 0 for s in status(config))


def test_status_reports_lag_in_events_and_the_age_of_the_oldest_unapplied(world: World) -> None:
    config = world.config("lag", names=("listings", "wallets"))
    time.sleep(1.2)  # every message of the world is at least this old now

    behind = {s.name: s for s in status(config)}
    catch_up(config)
    caught = status(config)

    assert {name: s.lag_events > 0 for name, s in behind.items()} == {"listings": True, "wallets": True}
    assert all(s.lag_seconds >= 1.0 for s in behind.values())
    assert all(s.lag_events == 0 and s.lag_seconds == 0.0 for s in caught)


def test_rebuild_gives_the_same_contents(caught_up: World) -> None:
    config = caught_up.config()
    with conn_for(config) as conn:
        for table in KEYS:
            conn.execute(f"DELETE FROM {table}")
        conn.execute("DELETE FROM rm_seller_dashboard")
        conn.commit()
    ticks: list[tuple[int, int]] = []
    for name in projection_names():
        rebuild(config, name, progress=lambda done, total: ticks.append((done, total)))
    assert ticks and ticks[-1][0] >= ticks[-1][1] > 0
    with conn_for(config) as conn:
        assert_models_equal(conn, caught_up)
        leftovers = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
                                 " AND (tablename LIKE '%%__next' OR tablename LIKE '%%__old')").fetchone()
        assert leftovers == (0,)
    port = config.search_port()
    assert_search_equal(port, config.index_alias, caught_up)
    assert len(port.alias_targets(config.index_alias)) == 1


def test_rebuild_while_clients_query(caught_up: World) -> None:
    config = caught_up.config()
    port = config.search_port()
    errors: list[str] = []
    counts: list[tuple[int, int]] = []
    stop = threading.Event()

    def client() -> None:
        with conn_for(config) as conn:
            conn.autocommit = True
            while not stop.is_set():
                try:
                    row = conn.execute("SELECT count(*) FROM rm_listings WHERE status = 'published'").fetchone()
                    hits = port.search(config.index_alias, {"match": {"title": "camera"}}, size=1)
                    counts.append((row[0] if row else 0, hits["hits"]["total"]["value"]))
                except Exception as exc:  # any failure is what this test exists to catch
                    errors.append(repr(exc))

    reader = threading.Thread(target=client)
    reader.start()
    try:
        for name in ("listings", "search", "listings"):
            rebuild(config, name)
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert len(counts) > 10 and min(min(c) for c in counts) > 0


def test_search_typo_facets_and_price_range(caught_up: World) -> None:
    config = caught_up.config()
    port = config.search_port()
    port.refresh(config.index_alias)
    fuzzy = port.search(config.index_alias, {"match": {"title": {"query": "vintaeg camrea", "fuzziness": "AUTO"}}})
    assert fuzzy["hits"]["hits"][0]["_id"] == str(caught_up.ids["Vintage camera Leica"])
    listings = expected(caught_up)["rm_listings"]
    facets = port.search(config.index_alias, size=0, aggs={"c": {"terms": {"field": "category", "size": 50}}})
    counted = {b["key"]: b["doc_count"] for b in facets["aggregations"]["c"]["buckets"]}
    wanted: dict[str, int] = defaultdict(int)
    for row in listings.values():
        wanted[row["category"]] += 1
    assert counted == wanted
    priced = port.search(config.index_alias, {"range": {"price_amount": {"gte": 5_000, "lte": 7_500}}}, size=100)
    assert {h["_id"] for h in priced["hits"]["hits"]} == {
        str(k) for k, row in listings.items() if 5_000 <= row["price_amount"] <= 7_500}


def test_killed_projection_ends_like_one_that_never_died(caught_up: World) -> None:
    config = caught_up.config("kf")
    process = run_projections_process(config)
    deadline = time.monotonic() + 60
    with psycopg.connect(config.settings.pg_conninfo, autocommit=True) as watcher:
        while checkpointed(watcher, config.schema) == 0 and time.monotonic() < deadline:
            time.sleep(0.0005)
    process.send_signal(signal.SIGKILL)  # mid-stream: some batches committed, others not
    process.wait()
    applied, lag = applied_and_lag(config)
    assert applied > 0 and lag > 0, "the kill did not land mid-stream"
    process = run_projections_process(config)
    try:
        wait_until_caught_up(config, process)
        assert {s.state for s in status(config)} == {"live"}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    with conn_for(config) as conn:
        assert_models_equal(conn, caught_up)
    assert_search_equal(config.search_port(), config.index_alias, caught_up)


def test_rebuild_and_live_consumption_of_the_same_log_give_identical_rows(caught_up: World) -> None:
    live, rebuilt = caught_up.config("live"), caught_up.config("rb")
    process = run_projections_process(live, batch_size=50)
    try:
        wait_until_caught_up(live, process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    for name in projection_names():
        rebuild(rebuilt, name)
    with conn_for(live) as live_conn, conn_for(rebuilt) as rebuilt_conn:
        live_rows, rebuilt_rows = every_row(live_conn), every_row(rebuilt_conn)
    assert live_rows == rebuilt_rows
    assert len(live_rows["rm_listings"]) >= 5 and live_rows[DEAD_LETTERS]  # the poison test's letters too
    port = live.search_port()
    assert search_docs(port, live.index_alias) == search_docs(port, rebuilt.index_alias)


def every_row(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Every row of every projection table and of the dead letters, as sorted JSON (all columns)."""
    tables = [table for cls in PROJECTIONS for table in cls.tables]
    rows = {table: sorted(json.dumps(r[0], sort_keys=True) for r in conn.execute(
        f"SELECT to_jsonb(t) FROM {table} t").fetchall()) for table in tables}
    rows[DEAD_LETTERS] = sorted(json.dumps(r[0], sort_keys=True) for r in conn.execute(
        f"SELECT to_jsonb(t) - 'dead_at' FROM {DEAD_LETTERS} t").fetchall())
    conn.rollback()
    return rows


def set_relay(conn: psycopg.Connection[Any], position: int) -> None:
    """Where the relay says it has published up to, in the world's own schema."""
    conn.execute(POSITIONS_DDL)
    conn.execute(f"INSERT INTO {RELAY_POSITIONS_TABLE} (name, notification_id) VALUES (%s, %s)"
                 " ON CONFLICT (name) DO UPDATE SET notification_id = EXCLUDED.notification_id", (RELAY_NAME, position))


def test_read_your_writes_watermark(caught_up: World) -> None:
    config = caught_up.config()
    catch_up(config)
    s = Script(prefix=caught_up.prefix, clock=T0 + timedelta(days=2))
    listing = Listing.draft(listing_id=uuid.uuid4(), seller_id=caught_up.ids["seller2"], kind="dataset",
                            title="Fresh dataset", description="", category="datasets", price=Money(100, EUR),
                            now=s.now())
    s.save(listing)
    message = to_message_at(s.messages[0], len(caught_up.messages) + 1)
    position = int(message.header("notification_id") or 0)
    rule = LogWatermark(KafkaEndOffsets(caught_up.settings), projection_topics(caught_up.prefix), ttl_s=0)
    with conn_for(config) as conn:
        conn.autocommit = True
        set_relay(conn, position - 1)
        assert not rule.caught_up(conn, "listings", position)  # the relay has not published it yet
        caught_up.publish([message])
        caught_up.messages.append(message)
        set_relay(conn, position)
        assert not rule.caught_up(conn, "listings", position)  # published, not applied
        catch_up(config, names=["listings"])
        assert rule.caught_up(conn, "listings", position)


def test_a_read_after_a_dead_lettered_position_answers_409_not_stale_data(caught_up: World) -> None:
    config = caught_up.config()
    position = len(caught_up.messages) + 10_000  # after every position the world uses
    poison = EventMessage(domain_topic("trust", caught_up.prefix), b"x", b"{not json", [
        ("schema_name", b"TrustSignalRecorded"), ("schema_version", b"1"), ("notification_id", str(position).encode())])
    caught_up.publish([poison])
    catch_up(config, names=["trust"])
    with conn_for(config) as conn:
        conn.autocommit = True
        set_relay(conn, position)
    read_config = ReadApiConfig(pg_schema=config.schema, search_alias=config.index_alias, after_timeout_s=5.0,
                                rate_limit=None)
    app = create_app(caught_up.settings, projection_topics=projection_topics(caught_up.prefix), config=read_config)
    with TestClient(app) as client:
        trust = f"/v1/users/{caught_up.ids['seller1']}/trust"
        refused = client.get(trust, params={"after": position})
        before = client.get(trust, params={"after": position - 1})
    error = refused.json()["error"]
    assert refused.status_code == 409 and error["code"] == "read.position_dead_lettered", refused.text
    assert "dead-lettered" in error["message"] and error["details"]["projection"] == "trust"
    assert "TrustSignalRecorded v1" in error["details"]["reason"]
    assert before.status_code == 200, before.text  # only the read that would be stale is refused
