"""Signed tree heads as kept (table rows, checkpoint messages, an auditor's files) and their checks."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

from commands.audit.heads import HEADS_TABLE
from commands.audit.merkle import AuditError, RootBuilder
from commands.audit.report import Problem
from commands.audit.signing import SignedTreeHead, verify_tree_head
from commands.audit.source import LogSource
from domain.chain import ChainChecker

_MAX_LISTED = 5


@dataclass(frozen=True)
class StoredHead:
    """A signed tree head as kept (table row or checkpoint message); `signed` is None when unreadable."""

    tree_size: int
    last_notification_id: int
    signed: SignedTreeHead | None
    error: str = ""

    @classmethod
    def parse(cls, tree_size: int, last_notification_id: int, doc: Any) -> StoredHead:
        try:
            return cls(tree_size, last_notification_id, SignedTreeHead.from_dict(doc))
        except (AuditError, TypeError, ValueError) as exc:
            return cls(tree_size, last_notification_id, None, str(exc))


def read_heads(source: LogSource) -> list[StoredHead]:
    """Every stored signed head, by size; none when the relay has not created its table yet."""
    with source.connect() as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f"{source.schema}.{HEADS_TABLE}",)).fetchone()
        if row is None or row[0] is None:
            return []
        rows = conn.execute(
            sql.SQL("SELECT tree_size, last_notification_id, head FROM {} ORDER BY tree_size").format(
                source.heads_table
            )
        ).fetchall()
    return [StoredHead.parse(int(size), int(last), head) for size, last, head in rows]


def check_heads(
    heads: Sequence[StoredHead],
    roots: RootBuilder,
    notification_ids: Sequence[int],
    public_key: Ed25519PublicKey,
    chains: ChainChecker,
    where: str | None = None,
) -> list[Problem]:
    """Signature, size and root of every head; the first root mismatch narrowed down to a leaf range.

    where: which copy of the heads these are (the store's, the checkpoints topic's, the auditor's).
    """
    problems = _check_heads(heads, roots, notification_ids, public_key, chains)
    return [replace(p, where=p.where or where) for p in problems] if where else problems


def _check_heads(
    heads: Sequence[StoredHead],
    roots: RootBuilder,
    notification_ids: Sequence[int],
    public_key: Ed25519PublicKey,
    chains: ChainChecker,
) -> list[Problem]:
    problems: list[Problem] = []
    good_size, mismatches = 0, 0
    for head in heads:
        problem = _head_signature_problem(head, public_key)
        if problem is not None:
            problems.append(problem)
            continue
        assert head.signed is not None
        size = head.signed.size
        if size > roots.size:
            detail = f"a head signs {size} events but the log holds {roots.size}: the last {size - roots.size} are gone"
            problems.append(Problem("missing", detail, position=roots.size, head_size=size))
            continue
        if roots.roots.get(size) == head.signed.root_hash:
            good_size = size
            continue
        mismatches += 1
        if mismatches == 1:
            problems.append(_root_mismatch(head, good_size, notification_ids, chains))
    if mismatches > 1:
        problems.append(
            Problem("root-mismatch", f"{mismatches - 1} later head(s) differ too, as they extend the first",
                    head_size=max(h.tree_size for h in heads))
        )
    return problems


def _head_signature_problem(head: StoredHead, public_key: Ed25519PublicKey) -> Problem | None:
    if head.signed is None:
        return Problem("bad-signature", f"unreadable head document: {head.error}", head_size=head.tree_size)
    try:
        verify_tree_head(public_key, head.signed)
    except AuditError as exc:
        return Problem("bad-signature", f"{exc} (key {head.signed.head.key_id})", head_size=head.tree_size)
    if head.signed.size != head.tree_size:
        return Problem("bad-signature", f"stored as size {head.tree_size} but signed for size {head.signed.size}",
                       head_size=head.tree_size)
    return None


def _root_mismatch(
    head: StoredHead, good_size: int, notification_ids: Sequence[int], chains: ChainChecker
) -> Problem:
    """Explain a head whose root the log no longer gives: missing, inserted or altered leaves in a range."""
    assert head.signed is not None
    size = head.signed.size
    span = f"positions {good_size}..{size - 1}"
    covered = bisect_right(notification_ids, head.last_notification_id)
    if covered < size:
        detail = (f"{size - covered} event(s) up to notification {head.last_notification_id} that this head "
                  f"covers are gone, between {span}")
        return Problem("missing", detail, position=good_size, head_size=size)
    if covered > size:
        detail = (f"{covered - size} event(s) up to notification {head.last_notification_id} were added "
                  f"after this head was signed, between {span}")
        return Problem("root-mismatch", detail, position=good_size, head_size=size)
    candidates = chains.last_events_between(good_size, size)
    base = f"the log no longer gives this head's root: the first changed leaf is in {span}"
    if good_size:
        base += f" (the head at size {good_size} still matches)"
    if len(candidates) == 1:
        agg, version, position, nid = candidates[0]
        detail = (f"{base}; the only event there that no later event links to is this one, so it was altered "
                  "(or notification ids were renumbered)")
        return Problem("root-mismatch", detail, agg, version, position, nid, head_size=size)
    listed = ", ".join(f"{agg} v{version} (position {pos})" for agg, version, pos, _ in candidates[:_MAX_LISTED])
    more = f" and {len(candidates) - _MAX_LISTED} more" if len(candidates) > _MAX_LISTED else ""
    detail = f"{base}; events there that no later event links to: {listed or 'none'}{more}"
    return Problem("root-mismatch", detail, position=good_size, head_size=size)


def signed_ok(head: StoredHead, public_key: Ed25519PublicKey) -> bool:
    """Whether a head is readable, signed by the key and stored under its own size."""
    return _head_signature_problem(head, public_key) is None


def load_trusted_heads(path: Path) -> list[StoredHead]:
    """The heads an auditor kept: a JSON file (one head or a list of them) or a folder of such files.

    Each head is a signed tree head document (`audit heads --json`, a checkpoint message, or what
    `audit witness` keeps); unreadable ones come back with their error, to be reported.
    """
    files = sorted(path.glob("**/*.json")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no *.json head under {path}")
    heads: dict[tuple[int, Any], StoredHead] = {}
    for file in files:
        try:
            doc = orjson.loads(file.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            heads[(0, str(file))] = StoredHead(0, 0, None, f"{file}: {exc}")
            continue
        for item in doc if isinstance(doc, list) else [doc]:
            head = _parse_document(item, str(file))
            heads.setdefault((head.tree_size, head.signed or str(file)), head)
    return sorted(heads.values(), key=lambda head: head.tree_size)


def _parse_document(doc: Any, origin: str) -> StoredHead:
    if not isinstance(doc, dict):
        return StoredHead(0, 0, None, f"{origin}: not a head document")
    size, last = doc.get("tree_size"), doc.get("last_notification_id", 0)
    if not isinstance(size, int) or not isinstance(last, int):
        return StoredHead(0, 0, None, f"{origin}: tree_size and last_notification_id must be integers")
    return StoredHead.parse(size, last, doc)


def compare_copies(store: Sequence[StoredHead], published: Sequence[StoredHead]) -> list[Problem]:
    """The store's heads against the checkpoints topic's: each head must be in both, and the same.

    The relay publishes a head before storing it, so a head on the topic that the store lacks was
    deleted from the table (or a relay crashed in between, which a restart does not repair: report it);
    a stored head missing from the topic was deleted from Kafka.
    """
    stored = {head.tree_size: head for head in store if head.signed is not None}
    on_topic = {head.tree_size: head for head in published if head.signed is not None}
    problems = []
    for size, head in sorted(on_topic.items()):
        kept = stored.get(size)
        if kept is None:
            problems.append(Problem("head-mismatch", "a head on the checkpoints topic is missing from the store "
                                    "(its row was deleted)", head_size=size))
        elif kept.signed != head.signed:
            problems.append(Problem("head-mismatch", "the store's head differs from the one on the checkpoints "
                                    "topic (its row was rewritten)", head_size=size))
    for size in sorted(set(stored) - set(on_topic)):
        problems.append(Problem("head-mismatch", "a stored head is missing from the checkpoints topic "
                                "(its message was deleted)", head_size=size))
    return problems


def missing_kept_heads(store: Sequence[StoredHead], trusted: Sequence[StoredHead]) -> list[Problem]:
    """Heads the auditor kept that the store no longer has, or has differently."""
    stored = {head.tree_size: head.signed for head in store if head.signed is not None}
    problems = []
    for head in trusted:
        if head.signed is None:
            continue
        kept = stored.get(head.tree_size)
        if kept != head.signed:
            what = "is missing from the store" if kept is None else "differs from the store's"
            problems.append(Problem("head-mismatch", f"a head the auditor kept {what}", head_size=head.tree_size,
                                    where="trusted heads"))
    return problems
