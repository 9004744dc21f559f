"""`bazaar audit verify` from the store: every aggregate's hash chain, the Merkle tree and every signed head.

One pass over the events table in notification order (a server-side cursor, fetched ahead on a thread
so that PostgreSQL reads while Python hashes). Each event's hash is recomputed from its stored JSON
(`commands.audit.codec`); every aggregate's chain is checked (`commands.audit.chains`); the RFC 6962
tree is rebuilt from every event's leaf, and every head is checked (`commands.audit.headcheck`).

The first problem reported is the earliest in notification order: altered, missing, duplicated or
reordered events by aggregate, version and log position; then heads (bad-signature, root-mismatch).

Against kept heads (`--trusted-heads`) the first leaf that differs is named by subtree comparison;
heads are compared with the checkpoints topic, events with Kafka's (`--cross-check`), and events under
no signed head that are older than the signing interval plus grace fail the check.
"""
from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

from commands.audit.chains import as_problems
from commands.audit.codec import StoredHasher, UnreadableEvent, canonical_fields
from commands.audit.headcheck import (
    StoredHead,
    check_heads,
    compare_copies,
    missing_kept_heads,
    read_heads,
    signed_ok,
)
from commands.audit.heads import SIGNING_GRACE_S, SIGNING_INTERVAL_S, leaf_of
from commands.audit.merkle import MerkleLog, RootBuilder, first_difference
from commands.audit.report import Problem, VerifyReport, unique_problems
from commands.audit.signing import key_id
from commands.audit.source import LogSource, Row, stream_rows
from commands.audit.tree import stored_leaves, tree_table_exists
from domain.chain import GENESIS_HASH, ChainChecker

MAX_UNSIGNED_AGE_S = SIGNING_INTERVAL_S + SIGNING_GRACE_S
"""Events older than this must be under a signed head (the relay signs every SIGNING_INTERVAL_S)."""


@dataclass(frozen=True)
class Evidence:
    """What verify compares the store with, besides the heads in its own table."""

    trusted: Sequence[StoredHead] = ()
    """Heads the auditor kept (`--trusted-heads`): the only ones a database superuser cannot touch."""
    published: Sequence[StoredHead] | None = None
    """The checkpoints topic's heads; None when not compared."""
    kafka_leaves: Sequence[tuple[int, bytes, str]] | None = None
    """`--cross-check`: (notification id, leaf hash, where) of every event on Kafka, in notification order."""
    max_unsigned_age_s: float | None = MAX_UNSIGNED_AGE_S
    """Events older than this under no signed head are a failure; None accepts any unsigned tail."""
    now: float = field(default_factory=time.time)


@dataclass
class _Pass:
    """What one ordered pass over the store gives."""

    chains: ChainChecker
    roots: RootBuilder
    hasher: StoredHasher
    nids: array[int] = field(default_factory=lambda: array("q"))
    leaves: bytearray = field(default_factory=bytearray)

    @property
    def size(self) -> int:
        return len(self.nids)

    def leaf(self, position: int) -> bytes:
        return bytes(self.leaves[position * 32 : position * 32 + 32])


def verify_store(
    source: LogSource,
    public_key: Ed25519PublicKey,
    *,
    evidence: Evidence | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every stored event's chain and every head, the store's and those in `evidence`."""
    started = time.perf_counter()
    evidence = evidence or Evidence()
    heads = read_heads(source)
    published = list(evidence.published or ())
    sizes = [h.tree_size for h in [*heads, *evidence.trusted, *published]]
    scan = _scan(source, sizes, on_progress)
    chains = scan.chains
    problems = as_problems(chains.finish())
    problems += check_heads(heads, scan.roots, scan.nids, public_key, chains, "store")
    problems += check_heads(evidence.trusted, scan.roots, scan.nids, public_key, chains, "trusted heads")
    problems += missing_kept_heads(heads, evidence.trusted)
    problems += _locate_rewrite(source, scan, evidence, [*heads, *published], public_key)
    if evidence.published is not None:
        problems += check_heads(published, scan.roots, scan.nids, public_key, chains, "checkpoints topic")
        problems += compare_copies(heads, published)
    if evidence.kafka_leaves is not None:
        problems += _cross_check(source, scan, evidence.kafka_leaves)
    every = [h for h in [*heads, *evidence.trusted, *published] if signed_ok(h, public_key)]
    latest = max((h.tree_size for h in every), default=0)
    report = VerifyReport(
        "store", events=scan.size, aggregates=len(chains.states), heads=len(heads), latest_head_size=latest,
        fallbacks=scan.hasher.fallbacks, key_id=key_id(public_key), trusted_heads=len(evidence.trusted),
    )
    tail = _unsigned_tail(source, scan, latest, evidence)
    report.unsigned_tail_accepted = evidence.max_unsigned_age_s is None
    report.problems = unique_problems(problems + tail)
    report.seconds = time.perf_counter() - started
    return report


def _scan(source: LogSource, sizes: Sequence[int], on_progress: Callable[[int], None] | None) -> _Pass:
    """One ordered pass over the log: hashes, chains, leaves and the roots at the heads' sizes."""
    scan = _Pass(ChainChecker(), RootBuilder(sizes), StoredHasher())
    for rows in stream_rows(source):
        leaves = _check_rows(rows, scan.size, scan.hasher, scan.chains)
        scan.roots.extend(leaves)
        scan.leaves += b"".join(leaves)
        scan.nids.extend(row[0] for row in rows)
        if on_progress is not None:
            on_progress(len(rows))
    return scan


def _check_rows(rows: list[Row], position: int, hasher: StoredHasher, chains: ChainChecker) -> list[bytes]:
    """Hash, chain-check and make the leaf of each row: the hot loop of verify.

    The chain step is ChainChecker.check inlined for the common case (a call per event costs a tenth of
    the time); anything unusual goes to ChainChecker.anomaly.
    """
    states, anomaly, fast = chains.states, chains.anomaly, hasher.__call__
    leaves: list[bytes] = []
    append = leaves.append
    for nid, agg, version, topic, state in rows:
        try:
            digest, prev = fast(agg, version, topic, state)
        except UnreadableEvent as exc:
            chains.unreadable(position, nid, agg, version, str(exc))
            append(leaf_of(nid, agg, version, "unreadable"))
            position += 1
            continue
        current = states.get(agg)
        if current is not None and current[0] == version and current[1] == prev:
            current[0], current[1], current[2], current[3] = version + 1, digest, position, nid
        elif current is None and version == 1 and prev == GENESIS_HASH:
            states[agg] = [2, digest, position, nid]
        else:
            anomaly(current, position, nid, agg, version, prev, digest)
        append(leaf_of(nid, agg, version, digest))
        position += 1
    return leaves


# --- naming the rewritten leaf ---------------------------------------------------------------------


def _first_bad_head(scan: _Pass, heads: Sequence[StoredHead], public_key: Ed25519PublicKey) -> StoredHead | None:
    """The smallest validly signed head whose root the current log no longer gives."""
    for head in sorted(heads, key=lambda h: h.tree_size):
        if signed_ok(head, public_key) and head.tree_size <= scan.size:
            assert head.signed is not None
            if scan.roots.roots.get(head.tree_size) != head.signed.root_hash:
                return head
    return None


def _locate_rewrite(
    source: LogSource, scan: _Pass, evidence: Evidence, heads: Sequence[StoredHead], public_key: Ed25519PublicKey
) -> list[Problem]:
    """Name the first leaf that differs from what a signed head signed, by subtree comparison.

    A head holds only a root, so the leaves it signed come from a copy that reproduces that root: the
    relay's stored tree nodes, else (with --cross-check) Kafka's events. Either is then authentic, whoever
    could write to it, and descending into differing subtrees finds the leaf. Any head the key signed
    will do; the auditor's kept heads are the ones a database superuser cannot delete.
    """
    head = _first_bad_head(scan, [*evidence.trusted, *heads], public_key)
    if head is None:
        return []
    assert head.signed is not None
    kept = head.signed in {h.signed for h in evidence.trusted}
    where = "trusted heads" if kept else "signed heads"
    size, root = head.tree_size, head.signed.root_hash
    ours = MerkleLog(scan.leaf(i) for i in range(size))
    for name, reference in _references(source, scan, evidence, size):
        if reference.size >= size and reference.root(size) == root:
            position = first_difference(ours, reference, size)
            if position is not None:
                return [_leaf_problem(source, scan, ours, reference, position, size, name, where)]
    if not kept:
        return []  # the store's own root mismatch is reported by the heads check
    detail = ("the log no longer gives the root of a head the auditor kept, and neither the stored tree nodes nor "
              "Kafka (--cross-check) reproduce that root to locate the leaf: they were rewritten too")
    return [Problem("root-mismatch", detail, head_size=size, where=where)]


def _references(
    source: LogSource, scan: _Pass, evidence: Evidence, size: int
) -> list[tuple[str, MerkleLog]]:
    found = []
    with source.connect() as conn:
        if tree_table_exists(conn):
            found.append(("the relay's stored tree", stored_leaves(conn, size)))
    if evidence.kafka_leaves is not None:
        found.append(("Kafka's copy", MerkleLog(leaf for _, leaf, _ in evidence.kafka_leaves[:size])))
    return found


def _leaf_problem(
    source: LogSource, scan: _Pass, ours: MerkleLog, theirs: MerkleLog, position: int, size: int, reference: str,
    where: str,
) -> Problem:
    """What the first differing leaf says: an event gone, one slipped in, or this one rewritten.

    Leaves bind notification ids, so after a removal every later event's leaf is the signed leaf one place
    further on (and after an insertion, one place back).
    """
    found = f"found by subtree comparison against {reference}, which reproduces the head's root"
    nid = scan.nids[position]
    if position + 1 < size and theirs.leaf_hash_at(position + 1) == ours.leaf_hash_at(position):
        detail = (f"the event the head of size {size} signed at position {position} is gone from the log ({found}); "
                  f"notification {nid} now sits there")
        return Problem("missing", detail, position=position, head_size=size, where=where)
    agg, version = _event_at(source, nid)
    if position + 1 < size and ours.leaf_hash_at(position + 1) == theirs.leaf_hash_at(position):
        detail = f"this event was slipped into the log before what the head of size {size} signed here ({found})"
        return Problem("altered", detail, agg, version, position, nid, head_size=size, where=where)
    detail = (f"leaf {position} is not the leaf the head of size {size} signed ({found}): this event was rewritten "
              "or moved")
    return Problem("altered", detail, agg, version, position, nid, head_size=size, where=where)


def _event_at(source: LogSource, nid: int) -> tuple[str | None, int | None]:
    with source.connect() as conn:
        row = conn.execute(
            sql.SQL("SELECT originator_id::text, originator_version FROM {} WHERE notification_id = %s").format(
                source.events
            ),
            (nid,),
        ).fetchone()
    return (str(row[0]), int(row[1])) if row else (None, None)


# --- Kafka's copy, leaf by leaf -------------------------------------------------------------------------


def _cross_check(source: LogSource, scan: _Pass, kafka: Sequence[tuple[int, bytes, str]]) -> list[Problem]:
    """The store's events against Kafka's, leaf by leaf: the first difference named on both sides."""
    for position, (nid, leaf, where) in enumerate(kafka):
        if position >= scan.size:
            detail = f"Kafka holds {len(kafka) - position} event(s) more than the store (removed from the store)"
            return [Problem("kafka-mismatch", detail, position=position, notification_id=nid, where=where)]
        if scan.nids[position] != nid or scan.leaf(position) != leaf:
            agg, version = _event_at(source, scan.nids[position])
            detail = f"the store's event here differs from Kafka's (notification {nid} at {where})"
            return [Problem("kafka-mismatch", detail, agg, version, position, scan.nids[position], where=where)]
    return []


# --- the unsigned tail -------------------------------------------------------------------------------


def _unsigned_tail(source: LogSource, scan: _Pass, latest: int, evidence: Evidence) -> list[Problem]:
    """Events under no signed head that are older than the signing interval plus grace."""
    if latest >= scan.size or evidence.max_unsigned_age_s is None:
        return []
    oldest_allowed = evidence.now - evidence.max_unsigned_age_s
    newest_allowed = evidence.now + SIGNING_GRACE_S
    after = scan.nids[latest - 1] if latest else 0
    position = latest
    for rows in stream_rows(source, after=after):
        for nid, agg, version, _, state in rows:
            stamp = _timestamp(state)
            if stamp is None or not oldest_allowed <= stamp <= newest_allowed:
                when = "has no readable timestamp" if stamp is None else f"is {evidence.now - stamp:,.0f} s old"
                detail = (f"{scan.size - latest} event(s) after the latest signed head (size {latest}) are under no "
                          f"signed head, and this one {when} (the relay signs every {SIGNING_INTERVAL_S:g} s); "
                          "--allow-unsigned-tail accepts it")
                return [Problem("unsigned-tail", detail, agg, version, position, nid)]
            position += 1
    return []


def _timestamp(state: bytes) -> float | None:
    """The event's own timestamp (epoch seconds) from its stored JSON."""
    try:
        fields = canonical_fields(orjson.loads(state))
        return datetime.fromisoformat(fields["timestamp"]).timestamp()
    except Exception:  # noqa: BLE001 - an unreadable event is reported by the chain check already
        return None
