"""Activity end to end (POST /v1/activity -> bazaar.activity -> trend job -> Redis) against bare kafka-python.

Run with `python tests/benchmarks/bench_stream_jobs.py [--events 50000] [--clients 4] [--rounds 1]` against the
local services. Everything lives in topics and Redis keys of its own, deleted at the end.

End to end: the read API and the trend job run as their own processes (as `bazaar up` runs them); client
threads here post the simulator's batches of 500; the clock stops when the job has committed the last event
into its Redis window state (its `events` counter, written in the same MULTI/EXEC as the windows). The read
API publishes each accepted batch as one record (`ActivityBatch`). The bare figure is the same events, each
already encoded as its own record, sent by `make_producer` (idempotent, acks=all) to a topic of their own while
a bare kafka-python consumer reads them all back, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.adapters.kafka import make_admin, make_consumer, make_producer  # noqa: E402
from infra.adapters.redis import make_redis  # noqa: E402
from infra.settings import REPO_ROOT, Settings  # noqa: E402
from schemas import names  # noqa: E402
from schemas.activity import MAX_BATCH, ActivityEvent  # noqa: E402
from stream_jobs.simulate import Traffic  # noqa: E402
from tests.support import wait_http  # noqa: E402

PARTITIONS = 3
GOAL_RATIO = 0.5
GOAL_RATE = 10_000


def serve_read_api(port: int, topic_prefix: str, redis_prefix: str) -> None:
    """`--serve`: the read API on its own, writing activity under the benchmark's prefixes."""
    import uvicorn

    from projections.registry import projection_topics
    from read_api.app import create_app
    from read_api.config import ReadApiConfig
    from read_api.streams import StreamsOptions

    settings = Settings()
    app = create_app(settings, projection_topics=projection_topics(), config=ReadApiConfig(rate_limit=None),
                     streams=StreamsOptions(topic_prefix, redis_prefix))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def batches(events: int, users: int, minutes: float) -> list[dict[str, Any]]:
    """Bodies of POST /v1/activity: the simulator's traffic over the last `minutes` of event time."""
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    count = (events + MAX_BATCH - 1) // MAX_BATCH
    step = timedelta(minutes=minutes) / events
    return [{"events": batch} for batch in Traffic(users).batches(count, MAX_BATCH, start, step)]


def end_to_end(settings: Settings, bodies: list[dict[str, Any]], clients: int, tag: str) -> tuple[int, float]:
    """(events, seconds) from the first POST to the job's commit of the last event."""
    topic_prefix, redis_prefix = f"{tag}.", f"{tag}:"
    port = free_port()
    env = {**os.environ, "BAZAAR_TRENDS_ALLOWED_LATENESS_S": "60"}
    api = subprocess.Popen([sys.executable, __file__, "--serve", str(port), topic_prefix, redis_prefix], env=env,
                           cwd=REPO_ROOT)
    job = subprocess.Popen([sys.executable, "-m", "infra.cli", "jobs", "run", "trends", "--topic-prefix",
                            topic_prefix, "--redis-prefix", redis_prefix], env=env, cwd=REPO_ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = make_redis(settings)
    meta = f"{redis_prefix}job:trends:meta"
    total = sum(len(body["events"]) for body in bodies)
    # The clients' JSON encoding is theirs, not the platform's: bodies are encoded before the clock starts.
    encoded_bodies = [json.dumps(body).encode() for body in bodies]
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        while not redis.exists(f"{redis_prefix}job:trends:epoch"):
            time.sleep(0.1)
        time.sleep(1.0)  # the job has claimed its state; give it time to assign its partitions
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          limits=httpx.Limits(max_connections=clients)) as client:
            began = time.perf_counter()

            def post(body: bytes) -> None:
                response = client.post("/v1/activity", content=body, headers={"content-type": "application/json"})
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(post, encoded_bodies))
            posted = time.perf_counter() - began
            while int(redis.hget(meta, "events") or 0) < total:  # type: ignore[arg-type]
                time.sleep(0.005)
            seconds = time.perf_counter() - began
        windows = redis.hget(meta, "windows_closed")
        print(f"  posted in {posted:.2f} s; in Redis after {seconds:.2f} s; windows closed so far: {windows}")
        return total, seconds
    finally:
        for process in (api, job):
            process.terminate()
            process.wait(timeout=20)
        keys = list(redis.scan_iter(f"{redis_prefix}*", count=1000))
        if keys:
            redis.delete(*keys)
        redis.close()


def bare(settings: Settings, values: list[bytes], keys: list[bytes], topic: str) -> tuple[int, float]:
    """(events, seconds) for the same events through a bare producer and consumer, concurrently."""
    consumer = make_consumer(settings, topic, group_id=f"bench-{uuid.uuid4().hex[:8]}")
    consumer.poll(timeout_ms=2000)  # join the group before the clock starts
    producer = make_producer(settings)
    received = 0
    began = time.perf_counter()

    def send() -> None:
        for key, value in zip(keys, values, strict=True):
            producer.send(topic, key=key, value=value)
        producer.flush()

    sender = threading.Thread(target=send)
    sender.start()
    while received < len(values):
        received += sum(len(records) for records in consumer.poll(timeout_ms=200).values())
    seconds = time.perf_counter() - began
    sender.join()
    producer.close()
    consumer.close()
    return received, seconds


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def encoded(bodies: list[dict[str, Any]]) -> tuple[list[bytes], list[bytes]]:
    """The events as the read API publishes them (key = actor), encoded outside the timing."""
    now = datetime.now(UTC)
    values, keys = [], []
    for body in bodies:
        for item in body["events"]:
            actor = f"session:{item['session_id']}"
            event = ActivityEvent(event_id=uuid.uuid4(), kind=item["kind"], actor=actor,
                                  listing_id=item.get("listing_id"), category=item.get("category"),
                                  query=item.get("query"), occurred_at=item["occurred_at"], received_at=now)
            values.append(event.model_dump_json().encode())
            keys.append(actor.encode())
    return values, keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--event-minutes", type=float, default=10.0,
                        help="event time the events span (compressed into the run: windows close meanwhile)")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "TOPIC_PREFIX", "REDIS_PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_read_api(int(args.serve[0]), args.serve[1], args.serve[2])
        return 0
    settings = Settings()
    bodies = batches(args.events, args.users, args.event_minutes)
    values, keys = encoded(bodies)
    admin = make_admin(settings)
    tags = [f"bench{uuid.uuid4().hex[:8]}" for _ in range(args.rounds)]
    topics = [names.topic(suffix, f"{tag}.") for tag in tags for suffix in (names.ACTIVITY_TOPIC, names.TRENDS_TOPIC)]
    bare_topic = f"bench{uuid.uuid4().hex[:8]}.bare"
    spec = {"num_partitions": PARTITIONS, "replication_factor": 1}
    admin.create_topics({name: spec for name in [*topics, bare_topic]}, wait_for_metadata=True)
    ratios = []
    try:
        for round_number, tag in enumerate(tags, 1):
            print(f"round {round_number}: {len(values):,} activity events over {args.event_minutes:g} min of event "
                  f"time, {args.clients} clients")
            e2e_events, e2e_s = end_to_end(settings, bodies, args.clients, tag)
            bare_events, bare_s = bare(settings, values, keys, bare_topic)
            e2e_rate, bare_rate = e2e_events / e2e_s, bare_events / bare_s
            ratios.append(e2e_rate / bare_rate)
            print(f"  POST /v1/activity -> Redis trends  {e2e_rate:>10,.0f} events/s")
            print(f"  bare kafka-python produce+consume  {bare_rate:>10,.0f} events/s")
            print(f"  ratio {e2e_rate / bare_rate:.2f} (goal >= {GOAL_RATIO}); rate goal >= {GOAL_RATE:,}/s")
    finally:
        admin.delete_topics([*topics, bare_topic])
        admin.close()
    print(f"best ratio {max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
