"""Write-side throughput, measured in one run so the ratios hold on a noisy machine.

  raw INSERT        one row per transaction (PostgreSQL group commit) — the ceiling
  plain save        eventsourcing Application.save, one event per transaction
  group commit      Marketplace.run: commands gathered and saved per batch
  HTTP API          POST /v1/listings from 32 client threads against a separate server process

The baselines run at 8 threads and at the group commit's own concurrency (64 callers), and the ratios
are taken at the same concurrency; the goals are evaluated and printed as met or missed.

Run with `./run bench` (or `python tests/benchmarks/bench_write_side.py`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from commands.application import Change, Marketplace  # noqa: E402
from commands.auth import TokenService, jwt_secret  # noqa: E402
from domain.listing import Listing  # noqa: E402
from domain.money import Money  # noqa: E402
from infra.settings import Settings, get_settings  # noqa: E402
from tests.support import wait_http  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CALLERS = int(os.environ.get("BENCH_CALLERS", "64"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
SELLER = uuid.uuid4()


def isolated_app(settings: Settings, name: str) -> Marketplace:
    """A Marketplace with its own events table, dropped after the run."""
    cls = type(f"Bench{name}", (Marketplace,), {"name": name})
    app: Marketplace = cls(settings)
    return app


def draft(app: Marketplace) -> Change:
    listing = Listing.draft(listing_id=uuid.uuid4(), seller_id=SELLER, kind="goods", title="Benchmark lamp",
                            description="", category="lamps", price=Money(1_000, "EUR"), now=datetime.now(UTC))
    return Change(listing)


def timed(threads: int, one: Callable[[], None]) -> float:
    """Operations per second of `one` called in a loop from `threads` threads for SECONDS."""
    count = [0] * threads
    stop = time.monotonic() + SECONDS

    def worker(slot: int) -> None:
        while time.monotonic() < stop:
            one()
            count[slot] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return sum(count) / (time.monotonic() - started)


def raw_insert(settings: Settings, threads: int) -> float:
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigserial primary key, aggregate uuid, state bytea)")
    local = threading.local()

    def one() -> None:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(settings.pg_conninfo, autocommit=True)
        local.conn.execute(f"INSERT INTO {table} (aggregate, state) VALUES (%s, %s)", (uuid.uuid4(), b"x" * 200))

    rate = timed(threads, one)
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {table}")
    return rate


def plain_save(app: Marketplace, threads: int) -> float:
    return timed(threads, lambda: app.save(draft(app).target))


def group_commit(app: Marketplace) -> float:
    return timed(CALLERS, lambda: app.run(lambda: draft(app)) and None)


def http_api(settings: Settings, name: str) -> float:
    port = 18_000 + os.getpid() % 1000
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), name])
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        token = TokenService(jwt_secret(settings), 3600).issue(SELLER, "seller")
        headers = {"Authorization": f"Bearer {token}"}
        body = {"kind": "goods", "title": "Benchmark lamp", "category": "lamps",
                "price": {"amount": 1000, "currency": "EUR"}}
        local = threading.local()

        def one() -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
            assert local.client.post("/v1/listings", json=body, headers=headers).status_code == 201

        return timed(CLIENTS, one)
    finally:
        server.terminate()
        server.wait(timeout=30)


def serve(port: int, name: str) -> None:
    import uvicorn

    from commands.api import create_app

    settings = get_settings()
    uvicorn.run(create_app(settings, isolated_app(settings, name)), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def drop(settings: Settings, name: str) -> None:
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        for suffix in ("events_idempotency", "events"):
            conn.execute(f"DROP TABLE IF EXISTS {name}_{suffix}")


def main() -> None:
    settings = get_settings()
    name = f"bench{uuid.uuid4().hex[:8]}"
    app = isolated_app(settings, name)
    try:
        rows = [
            Row(f"raw INSERT, 1 row/txn, {threads} threads", threads, raw_insert(settings, threads), "raw")
            for threads in sorted({8, CALLERS})
        ]
        rows += [
            Row(f"plain save, 1 event/txn, {threads} threads", threads, plain_save(app, threads), "plain")
            for threads in sorted({8, CALLERS})
        ]
        rows.append(Row(f"group commit (Application), {CALLERS} callers", CALLERS, group_commit(app), "group"))
        app.close()
        rows.append(Row(f"HTTP API POST /v1/listings, {CLIENTS} clients", CLIENTS, http_api(settings, name), "http"))
    finally:
        drop(settings, name)
    report(rows)


@dataclass(frozen=True)
class Row:
    """One measured path: its label, concurrency, rate and kind (raw, plain, group, http)."""

    path: str
    threads: int
    rate: float
    kind: str


def baseline(rows: list[Row], kind: str, threads: int) -> float:
    """The rate of a baseline at a concurrency (the nearest measured one when not exact)."""
    candidates = [r for r in rows if r.kind == kind]
    return min(candidates, key=lambda r: abs(r.threads - threads)).rate


def report(rows: list[Row]) -> None:
    """Print the table and each goal, met or missed (a noisy machine misses some: never a failure)."""
    table = Table(title=f"Write side ({SECONDS:.0f} s each, same run; ratios at the same concurrency)")
    for column in ("path", "ops/s", "÷ raw INSERT", "÷ plain save"):
        table.add_column(column, justify="right" if column != "path" else "left")
    for row in rows:
        raw, plain = baseline(rows, "raw", row.threads), baseline(rows, "plain", row.threads)
        table.add_row(row.path, f"{row.rate:,.0f}", f"{row.rate / raw:.2f}", f"{row.rate / plain:.2f}")
    Console().print(table)
    group = next(r for r in rows if r.kind == "group")
    raw, plain = baseline(rows, "raw", group.threads), baseline(rows, "plain", group.threads)
    goals = [
        ("group commit ≥ 5,000 commands/s", group.rate >= 5_000, f"{group.rate:,.0f}/s"),
        (f"group commit ≥ 0.6 × raw INSERT at {group.threads} threads", group.rate >= 0.6 * raw,
         f"{group.rate / raw:.2f}×"),
        (f"group commit ≥ 4 × plain save at {group.threads} threads", group.rate >= 4 * plain,
         f"{group.rate / plain:.2f}×"),
    ]
    for goal, met, measured in goals:
        print(f"goal {'met   ' if met else 'MISSED'}  {goal}: {measured}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        main()
