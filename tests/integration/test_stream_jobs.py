"""The trend job and the activity/trends routes on the real broker and Redis, with event times we control.

Every test has topics (`t<hex>.activity`, `t<hex>.trends`) and Redis keys (`t<hex>:`) of its own.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from kafka import TopicPartition
from typer.testing import CliRunner

from infra.adapters.kafka import make_admin, make_consumer, make_producer
from infra.adapters.redis import make_redis
from infra.settings import REPO_ROOT, Settings
from infra.tokens import TokenService, jwt_secret
from projections.read_models.listings import LISTINGS_DDL
from projections.registry import projection_topics
from read_api.app import create_app
from read_api.config import ReadApiConfig
from read_api.streams import StreamsOptions
from schemas import names
from schemas.activity import ActivityBatch, ActivityEvent, TrendWindow
from stream_jobs.cli import jobs_app
from stream_jobs.trend_job import TrendJob, TrendJobConfig
from tests.support import require_services

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CAM, LAMP = uuid.uuid4(), uuid.uuid4()
PARTITIONS = 3


@dataclass(frozen=True)
class Sandbox:
    """Topics and Redis keys of one test."""

    tag: str

    @property
    def topic_prefix(self) -> str:
        return f"{self.tag}."

    @property
    def redis_prefix(self) -> str:
        return f"{self.tag}:"

    @property
    def activity(self) -> str:
        return names.topic(names.ACTIVITY_TOPIC, self.topic_prefix)

    @property
    def trends(self) -> str:
        return names.topic(names.TRENDS_TOPIC, self.topic_prefix)

    def config(self, **overrides: Any) -> TrendJobConfig:
        values: dict[str, Any] = {"topic_prefix": self.topic_prefix, "redis_prefix": self.redis_prefix,
                                  "allowed_lateness_ms": 120_000, "idle_partition_s": 1.0, **overrides}
        return TrendJobConfig(**values)


@pytest.fixture
def sandbox(settings: Settings) -> Iterator[Sandbox]:
    require_services(settings, "kafka", "redis")
    box = Sandbox(f"t{uuid.uuid4().hex[:10]}")
    admin = make_admin(settings)
    spec = {"num_partitions": PARTITIONS, "replication_factor": 1}
    admin.create_topics({box.activity: spec, box.trends: spec}, wait_for_metadata=True)
    yield box
    admin.delete_topics([box.activity, box.trends])
    admin.close()
    client = make_redis(settings)
    keys = list(client.scan_iter(f"{box.redis_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def event(minute: float, actor: str, kind: str = "view", listing: uuid.UUID | None = CAM,
          category: str | None = "cameras") -> ActivityEvent:
    moment = T0 + timedelta(minutes=minute)
    return ActivityEvent(event_id=uuid.uuid4(), kind=kind, actor=actor, listing_id=listing,  # type: ignore[arg-type]
                         category=category, occurred_at=moment, received_at=moment)


def produce(settings: Settings, topic: str, by_partition: dict[int, list[ActivityEvent]]) -> None:
    producer = make_producer(settings)
    for partition, events in by_partition.items():
        for e in events:
            batch = ActivityBatch(batch_id=uuid.uuid4(), events=[e])  # one record per event: order is ours
            producer.send(topic, key=e.actor.encode(), value=batch.model_dump_json().encode(), partition=partition)
    producer.flush()
    producer.close()


def step_until(job: TrendJob, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the job did not get there in time"
        job.step()


def published_windows(settings: Settings, topic: str) -> dict[str, dict[str, TrendWindow]]:
    """job name -> identity -> window, read from offset 0; a window published twice must be identical."""
    consumer = make_consumer(settings, group_id=None)
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    found: dict[str, dict[str, TrendWindow]] = {}
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                job = dict(record.headers)["job"].decode()
                window = TrendWindow.model_validate_json(record.value)
                kept = found.setdefault(job, {}).setdefault(window.identity, window)
                assert kept == window, f"{window.identity} published twice with different content"
    consumer.close()
    return found


# -- exact windows, lateness -----------------------------------------------------------------------------------

SCENARIO: dict[int, list[ActivityEvent]] = {
    0: [event(1, "user:a"), event(2, "user:a", "click"), event(6, "user:d"),
        event(4.5, "user:x"),  # partition watermark 10:06 - 2 min = 10:04: the 10:00 window is still open
        event(8, "user:e", "add_to_cart"),
        event(4 + 50 / 60, "user:y"),  # watermark 10:06 now: beyond the allowance, dropped and counted
        event(30, "user:z", listing=None, category="other")],
    1: [event(3, "user:b"), event(3.5, "user:b", "search", listing=None), event(7, "user:a"),
        event(30, "user:z", listing=None, category="other")],
    2: [event(4, "user:c", listing=LAMP, category="lamps"), event(9, "user:c", listing=LAMP, category="lamps"),
        event(30, "user:z", listing=None, category="other")],
}
TOTAL = sum(len(events) for events in SCENARIO.values())


def test_known_activity_gives_exact_windows_unique_users_velocities_and_late_counts(
    settings: Settings, sandbox: Sandbox
) -> None:
    produce(settings, sandbox.activity, SCENARIO)
    job = TrendJob(settings, sandbox.config())
    try:
        store = job.store
        step_until(job, lambda: int(store.meta().get("events", 0)) == TOTAL
                   and store.meta().get("closed_upto") == str(int((T0 + timedelta(minutes=28)).timestamp() * 1000)))
        meta = store.meta()
    finally:
        job.close()
    assert (int(meta["late_accepted"]), int(meta["late_dropped"])) == (1, 1)
    windows = published_windows(settings, sandbox.trends)["trends"]
    five = {(w.scope, w.key, w.start.minute): (w.volume, w.unique_users, w.velocity)
            for w in windows.values() if w.window == "5m"}
    assert five == {
        ("category", "cameras", 0): (5, 3, 5.0), ("category", "cameras", 5): (3, 3, -0.4),
        ("listing", str(CAM), 0): (4, 3, 4.0), ("listing", str(CAM), 5): (3, 3, -0.25),
        ("category", "lamps", 0): (1, 1, 1.0), ("category", "lamps", 5): (1, 1, 0.0),
        ("listing", str(LAMP), 0): (1, 1, 1.0), ("listing", str(LAMP), 5): (1, 1, 0.0),
    }
    first = next(w for w in windows.values() if w.window == "5m" and w.key == "cameras" and w.start == T0)
    assert first.kinds == {"click": 1, "search": 1, "view": 3}
    hours = {(w.key, w.end.minute): (w.volume, w.unique_users) for w in windows.values() if w.window == "1h"}
    assert len(windows) == int(meta["windows_closed"]) == 8 + 5 * 4  # 1h hops end at 10:05 .. 10:25
    assert hours[("cameras", 5)] == (5, 3) and hours[("cameras", 25)] == (8, 5)
    assert hours[(str(CAM), 25)] == (7, 5) and hours[("lamps", 25)] == (2, 1)

    client = make_redis(settings)
    try:
        prefix = sandbox.redis_prefix
        assert client.zrevrange(f"{prefix}trending_categories:5m", 0, -1) == ["cameras", "lamps"]
        assert client.zrevrange(f"{prefix}trends:5m:cameras", 0, -1) == [str(CAM)]
        assert client.zrevrange(f"{prefix}trends:1h:listings", 0, -1) == [str(CAM), str(LAMP)]
        assert client.hget(f"{prefix}trending_categories:window", "start_ms") == str(
            int((T0 - timedelta(minutes=35)).timestamp() * 1000))  # the 09:25-10:25 hop
        assert 0 < client.ttl(f"{prefix}trends:1h:listings") <= settings.trends_ranking_ttl_1h_s
    finally:
        client.close()
    status = CliRunner().invoke(jobs_app, ["status", "--topic-prefix", sandbox.topic_prefix,
                                           "--redis-prefix", sandbox.redis_prefix])
    assert status.exit_code == 0, status.output
    row = next(line for line in status.output.splitlines() if sandbox.activity in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[2:8] == ["0", str(TOTAL), "1", "1", "0", "28"]  # lag, events, late in, dropped, bad, windows


# -- kill -9 mid-stream ----------------------------------------------------------------------------------------


def random_activity(count: int, seed: int = 11) -> dict[int, list[ActivityEvent]]:
    """Two hours of activity, out of order by up to 3 minutes (past the 2-minute allowance sometimes)."""
    rng = random.Random(seed)
    by_partition: dict[int, list[ActivityEvent]] = {p: [] for p in range(PARTITIONS)}
    listings = [uuid.UUID(int=n + 1) for n in range(30)]
    for n in range(count):
        minute = n * 120 / count - rng.uniform(0, 3)
        listing = rng.choice(listings)
        category = f"cat-{listing.int % 4}"
        e = event(minute, f"user:{rng.randrange(60)}", rng.choice(["view", "click", "add_to_cart"]), listing,
                  category)
        by_partition[rng.randrange(PARTITIONS)].append(e)
    return by_partition


def job_process(sandbox: Sandbox) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "infra.cli", "jobs", "run", "trends", "--topic-prefix", sandbox.topic_prefix,
            "--redis-prefix", sandbox.redis_prefix, "--max-poll-records", "20", "--idle-partition-s", "1"]
    env = {**os.environ, "BAZAAR_TRENDS_ALLOWED_LATENESS_S": "120"}
    return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_models(client: Any, prefix: str) -> dict[str, Any]:
    """Every ranking (members with scores and details) and every SSE update under a prefix."""
    found: dict[str, Any] = {}
    for key in sorted(client.scan_iter(f"{prefix}trend*", count=1000)):
        kind = client.type(key)
        if kind == "zset":
            found[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            found[key] = client.hgetall(key)
        elif kind == "stream":
            found[key] = [fields["data"] for _, fields in client.xrange(key)]
    return {key.removeprefix(prefix): value for key, value in found.items()}


def test_a_job_killed_with_sigkill_mid_stream_and_restarted_yields_identical_windows(
    settings: Settings, sandbox: Sandbox
) -> None:
    count = 3000
    produce(settings, sandbox.activity, random_activity(count))
    reference = TrendJob(settings, sandbox.config(name="trends-ref", redis_prefix=f"{sandbox.redis_prefix}ref:"))
    try:
        ref_store = reference.store
        step_until(reference, lambda: int(ref_store.meta().get("events", 0)) == count, timeout_s=60)
        quiet_until = time.monotonic() + 2.0  # every partition idle: the watermark moves to the largest time seen
        while time.monotonic() < quiet_until:
            reference.step()
        ref_meta = ref_store.meta()
    finally:
        reference.close()

    client = make_redis(settings)
    offsets_key = f"{sandbox.redis_prefix}job:trends:offsets"
    process = job_process(sandbox)
    deadline = time.monotonic() + 60
    while sum(int(o) for o in client.hvals(offsets_key)) < count // 3:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stderr.close()  # type: ignore[union-attr]
    killed_at = sum(int(o) for o in client.hvals(offsets_key))
    assert killed_at < count, "the job finished before it was killed: nothing was tested"

    process = job_process(sandbox)
    meta_key = f"{sandbox.redis_prefix}job:trends:meta"
    try:
        deadline = time.monotonic() + 90
        while client.hget(meta_key, "closed_upto") != ref_meta["closed_upto"] or \
                client.hget(meta_key, "events") != str(count):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, client.hgetall(meta_key)
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stderr.close()  # type: ignore[union-attr]
    meta = client.hgetall(meta_key)
    for counter in ("events", "late_accepted", "late_dropped", "windows_closed", "closed_upto"):
        assert meta[counter] == ref_meta[counter], counter
    assert int(meta["late_dropped"]) > 0 and int(meta["windows_closed"]) > 100
    restarted = read_models(client, sandbox.redis_prefix)
    restarted = {key: value for key, value in restarted.items() if not key.startswith("ref:")}
    assert restarted == read_models(client, f"{sandbox.redis_prefix}ref:")
    client.close()
    windows = published_windows(settings, sandbox.trends)
    assert windows["trends"] == windows["trends-ref"]


# -- the read API: activity in, trends out, live --------------------------------------------------------------


@pytest.fixture
def listing_schema(settings: Settings) -> Iterator[str]:
    require_services(settings, "postgres")
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(LISTINGS_DDL.format(t=f"{name}.rm_listings"))
        conn.execute(
            f"INSERT INTO {name}.rm_listings (listing_id, seller_id, kind, title, description, category,"
            " price_amount, currency, status, attributes, royalty_bps, created_at, updated_at, version, position)"
            " VALUES (%s, %s, 'goods', 'Leica M6', '', 'cameras', 1000, 'EUR', 'published', '{}', 0, now(),"
            " now(), 1, 1)", (CAM, uuid.uuid4()))
    yield name
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def read_api(settings: Settings, sandbox: Sandbox, listing_schema: str) -> Iterator[httpx.Client]:
    config = ReadApiConfig(pg_schema=listing_schema, rate_limit=None)
    app = create_app(settings, projection_topics=projection_topics(), config=config,
                     streams=StreamsOptions(sandbox.topic_prefix, sandbox.redis_prefix))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def activity_on_topic(settings: Settings, topic: str) -> list[tuple[bytes, ActivityEvent]]:
    consumer = make_consumer(settings, group_id=None)
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    found = []
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        for records in consumer.poll(timeout_ms=500).values():
            found += [(r.key, e) for r in records for e in ActivityBatch.model_validate_json(r.value).events]
    consumer.close()
    return found


def test_post_activity_publishes_the_batch_with_the_caller_and_counts_unknown_listings(
    settings: Settings, sandbox: Sandbox, read_api: httpx.Client
) -> None:
    user = uuid.uuid4()
    token = TokenService(jwt_secret(settings), settings.jwt_ttl_s).issue(user, "buyer")
    now = datetime.now(UTC)
    unknown = uuid.uuid4()
    body = {"events": [
        {"kind": "view", "listing_id": str(CAM), "occurred_at": now.isoformat()},
        {"kind": "add_to_cart", "listing_id": str(unknown), "category": "bikes", "occurred_at": now.isoformat()},
        {"kind": "search", "query": "leica", "category": "cameras",
         "occurred_at": (now - timedelta(hours=3)).isoformat()},
    ]}
    response = read_api.post("/v1/activity", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 3, "unknown_listings": 1}
    published = activity_on_topic(settings, sandbox.activity)
    assert {key for key, _ in published} == {f"user:{user}".encode()}
    by_kind = {e.kind: e for _, e in published}
    assert by_kind["view"].category == "cameras" and by_kind["view"].listing_known is True  # from the read model
    assert by_kind["add_to_cart"].listing_known is False and by_kind["add_to_cart"].user_id == user
    assert by_kind["search"].query == "leica" and by_kind["search"].listing_known is None

    anonymous = {"events": [{"kind": "view", "listing_id": str(CAM), "session_id": "session-0001",
                             "occurred_at": now.isoformat()}]}
    assert read_api.post("/v1/activity", json=anonymous).status_code == 202
    anonymous_events = [e for key, e in activity_on_topic(settings, sandbox.activity) if key.startswith(b"session:")]
    assert [(e.actor, e.user_id) for e in anonymous_events] == [("session:session-0001", None)]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"events": [{"kind": "view", "listing_id": str(CAM), "occurred_at": "NOW"}]}, 422,
     "activity.session_required"),
    ({"events": [{"kind": "view", "listing_id": str(CAM), "session_id": "session-0001",
                  "occurred_at": "OLD"}]}, 422, "activity.time_out_of_range"),
    ({"events": [{"kind": "view", "session_id": "session-0001", "occurred_at": "NOW"}]}, 422, "request.invalid"),
    ({"events": [{"kind": "view", "listing_id": str(CAM), "session_id": "session-0001", "occurred_at": "NOW"}]
      * 501}, 422, "request.invalid"),
    ({"events": [{"kind": "purchase", "listing_id": str(CAM), "session_id": "session-0001",
                  "occurred_at": "NOW"}]}, 422, "request.invalid"),
])
def test_bad_batches_are_refused_whole_and_nothing_is_published(
    settings: Settings, sandbox: Sandbox, read_api: httpx.Client, body: dict[str, Any], status: int, code: str
) -> None:
    now = datetime.now(UTC)
    text = json.dumps(body).replace('"NOW"', json.dumps(now.isoformat())).replace(
        '"OLD"', json.dumps((now - timedelta(hours=25)).isoformat()))
    response = read_api.post("/v1/activity", content=text, headers={"content-type": "application/json"})
    assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    assert activity_on_topic(settings, sandbox.activity) == []


def test_a_bad_token_is_401_not_anonymous(read_api: httpx.Client) -> None:
    body = {"events": [{"kind": "view", "listing_id": str(CAM), "session_id": "session-0001",
                        "occurred_at": datetime.now(UTC).isoformat()}]}
    response = read_api.post("/v1/activity", json=body, headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401


class SseReader(threading.Thread):
    """Reads GET /v1/trends/stream into a list of (received monotonic time, id, event, data)."""

    def __init__(self, client: httpx.Client, last_event_id: str | None = None) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.events: list[tuple[float, str, str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self.stop = False

    def run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError:
            return  # the server stopped at the end of the test: the stream ends with it

    def _read(self) -> None:
        with self.client.stream("GET", "/v1/trends/stream", headers=self.headers, timeout=None) as response:
            self.connected.set()
            frame: dict[str, str] = {}
            for line in response.iter_lines():
                if self.stop:
                    return
                if not line:
                    if "data" in frame:
                        self.events.append((time.monotonic(), frame["id"], frame["event"], json.loads(frame["data"])))
                    frame = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    frame[name] = value

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{len(self.events)} SSE events, wanted {count}"
            time.sleep(0.01)


def test_sse_delivers_each_closed_window_within_two_seconds_and_resumes_after_last_event_id(
    settings: Settings, sandbox: Sandbox, read_api: httpx.Client
) -> None:
    job = TrendJob(settings, sandbox.config(idle_partition_s=60.0))
    stop = threading.Event()
    runner = threading.Thread(target=job.run, args=(stop,), daemon=True)
    runner.start()
    reader = SseReader(read_api)
    reader.start()
    assert reader.connected.wait(10)
    time.sleep(0.3)
    try:
        produce(settings, sandbox.activity, {p: [event(1, f"user:{p}")] for p in range(PARTITIONS)})
        time.sleep(1.0)
        closing_sent = time.monotonic()
        produce(settings, sandbox.activity, {p: [event(7.1, f"user:{p}")] for p in range(PARTITIONS)})
        reader.wait_for(2, timeout_s=5)  # the 5m window 10:00-10:05 and the hop 09:05-10:05
        received, first_id, name, data = reader.events[0]
        assert received - closing_sent < 2.0
        assert {e[2] for e in reader.events[:2]} == {"trends.5m", "trends.1h"}
        five = next(e[3] for e in reader.events if e[2] == "trends.5m")
        assert five["start"].startswith("2026-12-01T10:00:00") and five["categories"][0]["volume"] == 3
        last_seen = reader.events[1][1]
        reader.stop = True

        produce(settings, sandbox.activity, {p: [event(12.1, f"user:{p}")] for p in range(PARTITIONS)})
        resumed = SseReader(read_api, last_event_id=last_seen)
        resumed.start()
        resumed.wait_for(2, timeout_s=5)
        assert [e[3]["start"][11:16] for e in resumed.events[:2]] == ["09:10", "10:05"]  # 1h first at one end
        assert all(e[1] > last_seen for e in resumed.events)

        trends = read_api.get("/v1/trends", params={"window": "5m"}).json()
        assert trends["start"].startswith("2026-12-01T10:05:00")
        assert [(i["key"], i["volume"], i["unique_users"]) for i in trends["items"]] == [("cameras", 3, 3)]
        listings = read_api.get("/v1/trends", params={"window": "5m", "category": "cameras"}).json()
        assert [i["key"] for i in listings["items"]] == [str(CAM)]
        bad = read_api.get("/v1/trends", params={"window": "2h"})
        assert bad.status_code == 422
        assert read_api.get("/v1/trends/stream", headers={"Last-Event-ID": "nope"}).status_code == 422
    finally:
        stop.set()
        runner.join(timeout=10)


def test_a_served_search_becomes_a_search_event_without_waiting_for_the_broker(
    settings: Settings, sandbox: Sandbox
) -> None:
    import asyncio

    from read_api.activity_routes import emit_search
    from read_api.streams import open_streams

    user = uuid.uuid4()

    async def emit() -> None:
        async with open_streams(settings, StreamsOptions(sandbox.topic_prefix, sandbox.redis_prefix)) as streams:
            emit_search(streams, user, "leica m6", "cameras", None)
            emit_search(streams, None, "tripod", None, "tab-8c1f20aa")
            emit_search(streams, None, "lamp", None, "bad id")  # not a session id: the shared anonymous actor

    asyncio.run(emit())  # closing the producer delivers what was sent
    found = {e.query: e for _, e in activity_on_topic(settings, sandbox.activity)}
    assert {q: (e.kind, e.actor, e.category) for q, e in found.items()} == {
        "leica m6": ("search", f"user:{user}", "cameras"), "tripod": ("search", "session:tab-8c1f20aa", None),
        "lamp": ("search", "session:anonymous", None)}


def test_the_simulator_posts_hot_categories_and_zipf_listings_through_the_api(
    settings: Settings, sandbox: Sandbox, read_api: httpx.Client
) -> None:
    import typer

    from stream_jobs.simulate import HOT, simulate

    cli = typer.Typer()
    cli.command()(simulate)
    result = CliRunner().invoke(cli, ["--users", "50", "--rate", "1000", "--minutes", "20", "--compress", "600",
                                      "--url", str(read_api.base_url)])
    assert result.exit_code == 0, result.output
    events = [e for _, e in activity_on_topic(settings, sandbox.activity)]
    assert len(events) == 2000  # 20 minutes of event time in 2 s of wall time at 1,000 events/s
    span = max(e.occurred_at for e in events) - min(e.occurred_at for e in events)
    assert timedelta(minutes=19) < span <= timedelta(minutes=20)
    hot = sum(1 for e in events if e.category in HOT)
    assert hot / len(events) > 0.55  # 60 % of sessions pick a hot category, plus their share of the rest
    listings: dict[uuid.UUID, int] = {}
    for e in events:
        if e.listing_id is not None:
            listings[e.listing_id] = listings.get(e.listing_id, 0) + 1
    top = sorted(listings.values(), reverse=True)
    assert top[0] > 10 * top[len(top) // 2]  # Zipf: the head listing far above the median one
