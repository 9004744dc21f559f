"""Relay throughput against a bare kafka-python producer sending the same payloads, in the same run.

Run with `python tests/benchmarks/bench_relay.py [--events 20000] [--rounds 2] [--batch 1000]` against the
local services. Everything lives in its own events table, schema and topics, dropped at the end.

The relay figure is end to end: reading the store, decoding, mapping to the wire schema, hashing Merkle
leaves, sending, waiting for every acknowledgement, recording the position and signing a checkpoint every
1,000 events. The bare figure is `make_producer` (the same idempotent acks=all producer) sending the very
messages the relay sends, mapped beforehand outside the timing, then one flush. Both run in this process
after `gc.freeze()`, as `bazaar relay` does after start-up; the order alternates between rounds. CPU per
event counts every thread of the process: on a small machine both sides are bound by it.
After each relay round (outside the timing) the topic is read from where that round began: it must hold
every stored event exactly once (by notification id), or the bench stops with an error.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from commands.application import Marketplace  # noqa: E402
from commands.messages import to_message  # noqa: E402
from commands.relay import Relay  # noqa: E402
from domain.money import Money  # noqa: E402
from domain.wallet import Wallet  # noqa: E402
from infra.adapters.kafka import make_admin, make_consumer, make_producer  # noqa: E402
from infra.settings import Settings  # noqa: E402
from schemas.messages import EventMessage, header_value  # noqa: E402

EVENTS_PER_WALLET = 20
GOAL = 0.7


@dataclass(frozen=True)
class Result:
    label: str
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_us_per_event(self) -> float:
        """Process CPU (every thread) per event: both sides are bound by one core's worth of Python."""
        return self.cpu_seconds / self.events * 1e6

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def make_events(app: Marketplace, count: int) -> None:
    """`count` events over count/20 wallets (opened + 19 deposits each), saved 50 wallets at a time."""
    now = datetime.now(UTC)
    wallets = []
    for _ in range(count // EVENTS_PER_WALLET):
        wallet = Wallet.open(owner_id=uuid.uuid4(), currency="EUR", now=now)
        for n in range(EVENTS_PER_WALLET - 1):
            wallet.deposit(amount=Money(100 + n, "EUR"), reference=f"bench-{n}", now=now)
        wallets.append(wallet)
    for start in range(0, len(wallets), 50):
        app.save(*wallets[start : start + 50])


def all_messages(app: Marketplace, prefix: str) -> list[EventMessage]:
    """Every stored event as the relay would publish it."""
    messages: list[EventMessage] = []
    after = 0
    while batch := app.recorder.select_notifications(after, 1000, inclusive_of_start=False):
        messages.extend(to_message(app.mapper.to_domain_event(n), n.id, prefix) for n in batch)
        after = batch[-1].id
    return messages


def bare_producer(settings: Settings, app: Marketplace, prefix: str) -> Result:
    """Send the relay's messages (mapped beforehand) with a plain producer, flush, check every ack."""
    messages = all_messages(app, prefix)
    producer = make_producer(settings)
    try:
        # Metadata for the topics before timing, as the relay's producer has it after its first batch.
        for topic in {m.topic for m in messages}:
            producer.partitions_for(topic)
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        futures = [producer.send(m.topic, key=m.key, value=m.value, headers=m.headers) for m in messages]
        producer.flush()
        assert all(f.succeeded() for f in futures)
        return Result("bare", len(messages), time.perf_counter() - started, time.process_time() - cpu)
    finally:
        producer.close()


def relay_run(
    app: Marketplace, settings: Settings, prefix: str, conninfo: str, round_no: int, batch_size: int
) -> Result:
    """One relay from position 0 over the whole store, timed from the first read to the last commit."""
    relay = Relay(
        app,
        settings,
        name=f"bench-{round_no}",
        topic_prefix=prefix,
        conninfo=conninfo,
        batch_size=batch_size,
        progress_interval_s=60,
    )
    topic = f"{prefix}wallet"
    start = end_offsets(settings, topic)
    try:
        assert relay.acquire()
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        published = relay.publish_available()
        relay.checkpoint()
        result = Result("relay", published, time.perf_counter() - started, time.process_time() - cpu)
    finally:
        relay.close()
    check_every_event_published(app, settings, topic, start)
    return result


def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """The topic's end offset per partition now."""
    consumer = make_consumer(settings, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return dict(consumer.end_offsets(partitions))
    finally:
        consumer.close()


def check_every_event_published(app: Marketplace, settings: Settings, topic: str,
                                start: dict[TopicPartition, int]) -> None:
    """The records after `start` are the stored events, each exactly once; raise otherwise."""
    stored = [n.id for n in app.recorder.select_notifications(0, 10**9, inclusive_of_start=False)]
    consumer = make_consumer(settings, group_id=None)
    seen: list[int] = []
    try:
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        end = consumer.end_offsets(list(start))
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < end[tp] for tp in start):
            if time.monotonic() > deadline:
                raise RuntimeError("reading back what the relay published took over 120 s")
            for records in consumer.poll(timeout_ms=500, max_records=10_000).values():
                seen.extend(int(header_value(r.headers, "notification_id") or 0) for r in records)
    finally:
        consumer.close()
    if sorted(seen) != stored:
        missing, extra = len(set(stored) - set(seen)), len(seen) - len(set(seen))
        raise RuntimeError(f"the relay published {len(seen)} records for {len(stored)} stored events "
                           f"({missing} missing, {extra} repeated)")


@contextmanager
def isolated(settings: Settings) -> Iterator[tuple[Marketplace, str, str, str]]:
    """An events table, a schema for the relay's tables and topics of their own; all dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    app_cls = type(f"RelayBench{tag}", (Marketplace,), {"name": f"rb{tag}"})
    app = app_cls(settings)
    schema, prefix = f"rb{tag}", f"b{tag}.bazaar."
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    admin = make_admin(settings)
    topics = {f"{prefix}wallet": 3, f"{prefix}audit.checkpoints": 1}
    admin.create_topics(
        {name: {"num_partitions": n, "replication_factor": 1} for name, n in topics.items()},
        wait_for_metadata=True,
    )
    try:
        yield app, prefix, f"{settings.pg_conninfo} options='-csearch_path={schema}'", schema
    finally:
        app.close()
        admin.delete_topics(list(topics))
        admin.close()
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute(f"DROP TABLE IF EXISTS rb{tag}_events, rb{tag}_events_idempotency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1_000, help="relay batch size")
    args = parser.parse_args()
    settings = Settings()
    with isolated(settings) as (app, prefix, conninfo, schema):
        started = time.perf_counter()
        make_events(app, args.events)
        print(f"stored {args.events} events in {time.perf_counter() - started:.1f} s")
        # As `bazaar relay` does after start-up: long-lived objects leave the collector's scans.
        gc.collect()
        gc.freeze()
        rows: list[tuple[Result, Result]] = []
        for round_no in range(args.rounds):
            # Alternate which goes first so neither always meets a warmer broker.
            if round_no % 2 == 0:
                bare = bare_producer(settings, app, prefix)
                relay = relay_run(app, settings, prefix, conninfo, round_no, args.batch)
            else:
                relay = relay_run(app, settings, prefix, conninfo, round_no, args.batch)
                bare = bare_producer(settings, app, prefix)
            rows.append((bare, relay))
    print(f"every relay round published each of the {args.events} stored events exactly once")
    print_table(rows)


def print_table(rows: list[tuple[Result, Result]]) -> None:
    columns = ("round", 5), ("bare ev/s", 10), ("relay ev/s", 10), ("ratio", 6), ("bare cpu us/ev", 14)
    print("\n" + "  ".join(f"{name:>{width}}" for name, width in columns) + f"  {'relay cpu us/ev':>15}")
    for n, (bare, relay) in enumerate(rows, start=1):
        print(
            f"{n:>5}  {bare.rate:>10,.0f}  {relay.rate:>10,.0f}  {relay.rate / bare.rate:>6.2f}"
            f"  {bare.cpu_us_per_event:>14.0f}  {relay.cpu_us_per_event:>15.0f}"
        )
    bare_total = sum(b.events for b, _ in rows) / sum(b.seconds for b, _ in rows)
    relay_total = sum(r.events for _, r in rows) / sum(r.seconds for _, r in rows)
    ratio = relay_total / bare_total
    print(f"{'all':>5}  {bare_total:>10,.0f}  {relay_total:>10,.0f}  {ratio:>6.2f}")
    print(f"\nratio goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
