"""Projection benchmarks on the real services, on isolated topics, schema and search alias.

1. Rebuild rate (events/s) of each projection, and as a ratio to a bare kafka-python consumer reading the
   same topics in the same run.
2. Live lag at a steady event rate: send time -> the checkpoint covering the event is committed (p50, p99),
   through `run_projections` (the Faust worker) in a subprocess.

    .venv/bin/python tests/benchmarks/bench_projections.py [--listings 5000] [--rate 500] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from kafka.admin import NewTopic
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from commands.messages import to_message  # noqa: E402
from domain.listing import Listing  # noqa: E402
from domain.money import Money  # noqa: E402
from domain.wallet import Wallet  # noqa: E402
from infra.adapters.kafka import make_admin, make_producer  # noqa: E402
from infra.settings import Settings, get_settings  # noqa: E402
from infra.topics import DOMAIN_AGGREGATES  # noqa: E402
from projections.config import ProjectionConfig  # noqa: E402
from projections.rebuild import rebuild  # noqa: E402
from projections.registry import projection_class  # noqa: E402
from projections.source import KafkaSource  # noqa: E402
from schemas.messages import EventMessage  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REBUILT = ("listings", "search", "vectors", "dashboard", "wallets")


def listing_messages(count: int, prefix: str, first_id: int) -> list[EventMessage]:
    """Four events per listing: drafted, published, repriced, enriched (no vector)."""
    messages = []
    for i in range(count):
        now = T0 + timedelta(seconds=i)
        listing = Listing.draft(listing_id=uuid.uuid4(), seller_id=uuid.UUID(int=i % 50 + 1), kind="goods",
                                title=f"Vintage camera {i}", description="a camera in good shape",
                                category=f"cat{i % 20}", price=Money(1_000 + i, "EUR"), now=now)
        listing.publish(now=now)
        listing.change_price(price=Money(900 + i, "EUR"), now=now)
        listing.enrich(model_id="m", model_version="1", condition_score=0.5, now=now)
        for event in listing.collect_events():
            messages.append(to_message(event, first_id + len(messages), prefix))
    return messages


def wallet_messages(count: int, prefix: str, first_id: int) -> list[EventMessage]:
    """A wallet opened per 10 deposits."""
    messages = []
    for w in range(max(1, count // 10)):
        wallet = Wallet.open(owner_id=uuid.uuid4(), currency="EUR", now=T0)
        for d in range(9):
            wallet.deposit(amount=Money(100, "EUR"), reference=f"d{w}-{d}", now=T0)
        messages.extend(to_message(e, first_id + len(messages), prefix) for e in wallet.collect_events())
    return messages


def publish(settings: Settings, messages: list[EventMessage]) -> None:
    producer = make_producer(settings)
    for m in messages:
        producer.send(m.topic, key=m.key, value=m.value, headers=m.headers)
    producer.flush()
    producer.close()


def bare_rate(settings: Settings, topics: list[str]) -> float:
    """Records/s of a bare consumer reading the topics from offset 0 to their end."""
    source = KafkaSource(settings, topics)
    source.seek({})
    ends = source.end_offsets()
    total, began = sum(ends.values()), time.perf_counter()
    read = 0
    while read < total:
        read += len(source.poll(1000))
    elapsed = time.perf_counter() - began
    source.close()
    return total / elapsed


def rebuild_rates(config: ProjectionConfig) -> list[tuple[str, int, float, float]]:
    rows = []
    for name in REBUILT:
        topics = projection_class(name).topics(config.topic_prefix)
        bare = bare_rate(config.settings, topics)
        began = time.perf_counter()
        read = rebuild(config, name)
        rate = read / (time.perf_counter() - began)
        rows.append((name, read, rate, rate / bare))
    return rows


def live_lag(config: ProjectionConfig, rate: int, seconds: float) -> list[float]:
    """Lags (s) of wallet deposits sent at `rate`/s, as seen in the wallets projection's checkpoints."""
    code = ("from infra.settings import get_settings; from projections.cli import run_projections;"
            f"run_projections(get_settings(), topic_prefix={config.topic_prefix!r}, schema={config.schema!r},"
            f" index_alias={config.index_alias!r}, names=('wallets',))")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sent: dict[tuple[int, int], float] = {}
    lags: list[float] = []
    try:
        time.sleep(8)  # the worker starts and catches up with the rebuild data first
        messages = wallet_messages(int(rate * seconds), config.topic_prefix, 10_000_000)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(config, sent, lags, stop))
        watcher.start()
        producer = make_producer(config.settings, linger_ms=0)
        began = time.perf_counter()
        for i, m in enumerate(messages):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            at = time.time()
            future = producer.send(m.topic, key=m.key, value=m.value, headers=m.headers)
            future.add_callback(lambda md, at=at: sent.__setitem__((md.partition, md.offset), at))
        producer.flush()
        deadline = time.time() + 15
        while len(lags) < len(messages) and time.time() < deadline:
            time.sleep(0.1)
        stop.set()
        watcher.join()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return lags


def _watch(config: ProjectionConfig, sent: dict[tuple[int, int], float], lags: list[float],
           stop: threading.Event) -> None:
    seen: dict[int, int] = {}
    with psycopg.connect(config.settings.pg_conninfo, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(f"SELECT partition, next_offset FROM {config.schema}.projection_checkpoints"
                                " WHERE projection = 'wallets'").fetchall()
            now = time.time()
            for partition, next_offset in rows:
                for offset in range(seen.get(partition, next_offset), next_offset):
                    if (partition, offset) in sent:
                        lags.append(now - sent[(partition, offset)])
                if partition not in seen:
                    seen[partition] = next_offset
                seen[partition] = max(seen[partition], next_offset)
            time.sleep(0.005)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listings", type=int, default=5_000)
    parser.add_argument("--wallet-events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    settings = get_settings()
    tag = uuid.uuid4().hex[:10]
    config = ProjectionConfig(settings, topic_prefix=f"b{tag}.bazaar.", schema=f"b{tag}",
                              index_alias=f"b{tag}-bazaar-listings")
    admin = make_admin(settings)
    topics = [f"{config.topic_prefix}{a}" for a in DOMAIN_AGGREGATES] + [config.dlq_topic]
    admin.create_topics([NewTopic(t, 3, 1) for t in topics])
    console = Console()
    try:
        listings = listing_messages(args.listings, config.topic_prefix, 1)
        publish(settings, listings + wallet_messages(args.wallet_events, config.topic_prefix, len(listings) + 1))
        table = Table(title=f"rebuild from offset 0 ({len(listings)} listing events, {args.wallet_events} wallet)")
        for column in ("projection", "events", "events/s", "ratio to bare consumer"):
            table.add_column(column, justify="right")
        for name, read, rate, ratio in rebuild_rates(config):
            table.add_row(name, str(read), f"{rate:,.0f}", f"{ratio:.2f}")
        console.print(table)
        lags = live_lag(config, args.rate, args.seconds)
        lag_table = Table(title=f"live lag at {args.rate} events/s for {args.seconds:.0f} s (Faust)")
        for column in ("events seen", "p50 ms", "p99 ms", "max ms"):
            lag_table.add_column(column, justify="right")
        lag_table.add_row(str(len(lags)), f"{percentile(lags, 50) * 1000:.0f}", f"{percentile(lags, 99) * 1000:.0f}",
                          f"{max(lags, default=float('nan')) * 1000:.0f}")
        console.print(lag_table)
    finally:
        _cleanup(settings, config, topics, admin)


def _cleanup(settings: Settings, config: ProjectionConfig, topics: list[str], admin: Any) -> None:
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {config.schema} CASCADE")
    config.search_port().client.indices.delete(index=f"{config.index_alias}-v*", ignore_unavailable=True)
    admin.delete_topics(topics)
    admin.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
