"""Benchmark of the auditor tools on the real local PostgreSQL (`./run up` first).

    .venv/bin/python tests/benchmarks/bench_audit.py [--events 100000] [--rounds 3]

Writes N events (wallets: opened + 9 deposits, 500 aggregates per save) to a schema of its own, signs a
head every 1,000 events, then measures in the same run, `--rounds` times each, the bare scan first in
even rounds and verify first in odd ones, so that both see the same machine (figures are medians):
- a bare scan: a server-side cursor over the events table recomputing a sha256 chain in Python;
- `audit verify` from the store (hash chains, Merkle tree, heads), and its ratio to the bare scan
  (goal >= 0.5);
- `audit replay` from the store: rebuild, then comparison with the store (goal >= 50,000 events/s);
- proof latency (p50, p95) of inclusion and consistency proofs served from the stored tree nodes, at
  each size of `--proof-sizes` (default 10k, 100k, 1M: a tree of that many leaves is stored beside the
  log, as the relay stores it; goal p95 < 10 ms, flat across sizes).
Prints one line per figure and a JSON summary; the schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from commands.application import Marketplace  # noqa: E402
from commands.audit.codec import StoredHasher  # noqa: E402
from commands.audit.heads import HeadStore, leaf_data  # noqa: E402
from commands.audit.merkle import MerkleLog, leaf_hash  # noqa: E402
from commands.audit.replay import replay_store  # noqa: E402
from commands.audit.signing import generate_private_key, make_tree_head, sign_tree_head  # noqa: E402
from commands.audit.source import LogSource, stream_rows  # noqa: E402
from commands.audit.tree import append_nodes, consistency_nodes, create_tree_table, inclusion_nodes  # noqa: E402
from commands.audit.verify import Evidence, verify_store  # noqa: E402
from domain.money import Money  # noqa: E402
from domain.wallet import Wallet  # noqa: E402
from infra.settings import Settings, get_settings  # noqa: E402

EVENTS_PER_WALLET = 10
WALLETS_PER_SAVE = 500
HEAD_EVERY = 1_000
PROOF_WARMUP = 20


def isolated_app(settings: Settings, schema: str) -> Marketplace:
    """A Marketplace whose tables live in their own schema."""

    def construct_env(self: Any, name: str, env: Any = None) -> Any:
        return Marketplace.construct_env(self, name, {**(env or {}), "POSTGRES_SCHEMA": schema})

    cls = type("BenchAudit", (Marketplace,), {"name": schema, "construct_env": construct_env})
    app: Marketplace = cls(settings)
    return app


def generate(app: Marketplace, events: int) -> None:
    """Wallets of 10 events each, saved 500 aggregates at a time."""
    now = datetime(2025, 1, 1, tzinfo=UTC)
    made = 0
    while made < events:
        batch = []
        for _ in range(min(WALLETS_PER_SAVE, (events - made) // EVENTS_PER_WALLET or 1)):
            wallet = Wallet.open(owner_id=uuid.uuid4(), currency="EUR", now=now)
            for i in range(EVENTS_PER_WALLET - 1):
                wallet.deposit(amount=Money(100 + i, "EUR"), reference=f"psp-{made}-{i}",
                               now=now + timedelta(seconds=i))
            batch.append(wallet)
            made += EVENTS_PER_WALLET
        app.save(*batch)


def sign_heads(source: LogSource) -> tuple[int, Ed25519PublicKey]:
    """A head every HEAD_EVERY events and one at the end, as the relay would: (how many, the key)."""
    key = generate_private_key()
    hasher, tree, nids = StoredHasher(), MerkleLog(), []
    for rows in stream_rows(source):
        for nid, agg, version, topic, state in rows:
            digest, _ = hasher(agg, version, topic, state)
            tree.append(leaf_hash(leaf_data(nid, uuid.UUID(agg), version, digest)))
            nids.append(nid)
    heads = HeadStore(source.connect)
    sizes = sorted({*range(HEAD_EVERY, tree.size, HEAD_EVERY), tree.size})
    for size in sizes:
        head = make_tree_head(key.public_key(), size, tree.root(size), int(time.time() * 1000))
        heads.add(sign_tree_head(key, head), nids[size - 1])
    return len(sizes), key.public_key()


def bare_scan(source: LogSource) -> float:
    """Events/s of a server-side cursor over the table recomputing a sha256 chain over the states."""
    query = sql.SQL(
        "SELECT notification_id, originator_id::text, originator_version, topic, state FROM {}"
        " ORDER BY notification_id"
    ).format(source.events)
    started, count, chain = time.perf_counter(), 0, b""
    with source.connect() as conn, conn.cursor(name="bench_bare_scan", binary=True) as cursor:
        cursor.itersize = 10_000
        cursor.execute(query)
        for row in cursor:
            chain = hashlib.sha256(chain + row[4]).digest()
            count += 1
    return count / (time.perf_counter() - started)


def verify_rate(source: LogSource, public_key: Ed25519PublicKey) -> float:
    """One `audit verify` from the store; its events per second (it must pass)."""
    report = verify_store(source, public_key, evidence=Evidence(max_unsigned_age_s=None))
    assert report.ok, [p.describe() for p in report.problems[:3]]
    return float(report.rate)


def proof_latency(settings: Settings, size: int, samples: int) -> dict[str, float]:
    """p50/p95 ms of inclusion and consistency proofs from a stored tree of `size` leaves (its own schema)."""
    schema = f"bench_tree_{uuid.uuid4().hex[:8]}"
    conninfo = f"{settings.pg_conninfo} options='-csearch_path={schema}'"
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            create_tree_table(conn)
            tree, step = MerkleLog(), 50_000
            for start in range(0, size, step):  # appended in batches, as the relay does
                old = tree.size
                end = min(size, start + step)
                tree.extend(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(start, end))
                append_nodes(conn, tree, old, list(range(old + 1, tree.size + 1)))
            conn.execute("VACUUM ANALYZE bazaar_audit_tree")
            rng = random.Random(size)
            inclusion, consistency = [], []
            # The first proofs after the tree is written warm the buffer cache, as a running server's is.
            for _ in range(samples + PROOF_WARMUP):
                index = rng.randrange(size)
                started = time.perf_counter()
                nodes = inclusion_nodes(conn, index, size)
                nodes.inclusion_proof(index, size)
                inclusion.append((time.perf_counter() - started) * 1000)
                old = rng.randrange(1, size)
                started = time.perf_counter()
                nodes = consistency_nodes(conn, old, size)
                nodes.consistency_proof(old, size)
                nodes.root(old)
                consistency.append((time.perf_counter() - started) * 1000)
        inclusion, consistency = inclusion[PROOF_WARMUP:], consistency[PROOF_WARMUP:]
        return {"inclusion_p50_ms": _pct(inclusion, 50), "inclusion_p95_ms": _pct(inclusion, 95),
                "consistency_p50_ms": _pct(consistency, 50), "consistency_p95_ms": _pct(consistency, 95)}
    finally:
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _pct(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, len(ordered) * pct // 100)], 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--proof-sizes", type=lambda text: [int(n) for n in text.split(",") if n],
                        default=[10_000, 100_000, 1_000_000], help="comma-separated tree sizes ('' for none)")
    parser.add_argument("--proof-samples", type=int, default=200)
    args = parser.parse_args()
    settings = get_settings()
    schema = f"bench_audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    app = isolated_app(settings, schema)
    source = LogSource(settings, schema, f"{schema}_events")
    try:
        started = time.perf_counter()
        generate(app, args.events)
        count = source.count()
        print(f"generated {count:,} events in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        heads, public_key = sign_heads(source)
        print(f"signed {heads} heads in {time.perf_counter() - started:.1f}s")
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(source.events))
        bare, verify, ratios = [], [], []
        for round_no in range(args.rounds):
            verify_first = round_no % 2 == 1  # alternate which side meets a warm cache first
            if verify_first:
                verify.append(verify_rate(source, public_key))
            bare.append(bare_scan(source))
            if not verify_first:
                verify.append(verify_rate(source, public_key))
            ratios.append(verify[-1] / bare[-1])
            print(f"  round {round_no + 1} ({'verify' if verify_first else 'bare scan'} first): bare scan "
                  f"{bare[-1]:,.0f} events/s · audit verify {verify[-1]:,.0f} events/s · ratio {ratios[-1]:.2f}")
        replays = []
        for _ in range(args.rounds):
            replayed = replay_store(source)
            assert replayed.ok, [d.describe() for d in replayed.differences[:3]]
            replays.append(replayed)
            print(f"  audit replay {replayed.rate:,.0f} events/s overall (rebuild "
                  f"{replayed.rebuild_rate:,.0f} events/s in {replayed.rebuild_seconds:.2f}s, comparison "
                  f"{replayed.compare_seconds:.2f}s)")
        median_replay = statistics.median(r.rate for r in replays)
        median_rebuild = statistics.median(r.rebuild_rate for r in replays)
        proofs = {}
        for size in args.proof_sizes:
            started = time.perf_counter()
            proofs[size] = proof_latency(settings, size, args.proof_samples)
            print(f"  proofs at {size:,} leaves: {proofs[size]} (tree stored and measured in "
                  f"{time.perf_counter() - started:.0f}s)")
        summary = {
            "events": count,
            "heads": heads,
            "rounds": args.rounds,
            "bare_scan_events_per_s_median": round(statistics.median(bare)),
            "verify_events_per_s_median": round(statistics.median(verify)),
            "verify_to_bare_ratio_median": round(statistics.median(ratios), 3),
            "replay_events_per_s_median": round(median_replay),
            "replay_rebuild_events_per_s_median": round(median_rebuild),
            "proof_latency_ms": proofs,
        }
        print(f"audit verify: {summary['verify_events_per_s_median']:,} events/s, "
              f"{summary['verify_to_bare_ratio_median']:.2f} of a bare scan (medians of {args.rounds}; goal 0.5)")
        print(f"audit replay: {summary['replay_events_per_s_median']:,} events/s overall, rebuild "
              f"{summary['replay_rebuild_events_per_s_median']:,} events/s (medians of {args.rounds}; goal 50,000)")
        print(json.dumps(summary))
        return 0
    finally:
        app.close()
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    raise SystemExit(main())
