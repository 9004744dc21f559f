"""Signed tree heads kept in PostgreSQL (and published to bazaar.audit.checkpoints by the relay).

Leaf i of the log's Merkle tree is the i-th event in notification order (0-based), and its data is
`leaf_data(notification_id, aggregate_id, version, event_hash)`: position and identity are bound into the
leaf, so a reordered, dropped or rewritten event changes the root. This is the only statement of the leaf
format; everything that makes a leaf calls `leaf_of`. The heads table is append-only by trigger.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

from psycopg import Connection

from commands.audit.merkle import leaf_hash
from commands.audit.signing import SignedTreeHead
from commands.audit.tree import make_append_only
from schemas import names

HEADS_TABLE = names.AUDIT_HEADS_TABLE
SIGNING_INTERVAL_S = 5.0
"""The relay signs a head at least this often while there is anything unsigned, events arriving or not."""
SIGNING_GRACE_S = 10.0
"""How much later than the interval `audit verify` still accepts an unsigned event (a slow relay, clocks)."""


def leaf_data(notification_id: int, aggregate_id: UUID | str, version: int, event_hash: str) -> bytes:
    """The bytes hashed into the Merkle leaf of one event (`aggregate_id` as a UUID or its text)."""
    return f"{notification_id}:{aggregate_id}:{version}:{event_hash}".encode()


def leaf_of(notification_id: int, aggregate_id: UUID | str, version: int, event_hash: str) -> bytes:
    """The Merkle leaf hash of one event."""
    return leaf_hash(leaf_data(notification_id, aggregate_id, version, event_hash))


class HeadStore:
    """Append-only table of signed tree heads, one per tree size."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Connection[Any]]]) -> None:
        self._connect = connect
        with connect() as conn, conn.transaction():
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {HEADS_TABLE} ("
                " tree_size bigint PRIMARY KEY, last_notification_id bigint NOT NULL,"
                " head jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
            )
            make_append_only(conn, HEADS_TABLE)

    def add(self, signed: SignedTreeHead, last_notification_id: int) -> None:
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO {HEADS_TABLE} (tree_size, last_notification_id, head) VALUES (%s, %s, %s)"
                " ON CONFLICT (tree_size) DO NOTHING",
                (signed.head.size, last_notification_id, json.dumps(signed.to_dict())),
            )

    def latest(self) -> tuple[SignedTreeHead, int] | None:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT head, last_notification_id FROM {HEADS_TABLE} ORDER BY tree_size DESC LIMIT 1"
            ).fetchone()
        return _row(row)

    def all(self) -> list[tuple[SignedTreeHead, int]]:
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT head, last_notification_id FROM {HEADS_TABLE} ORDER BY tree_size"
            ).fetchall()
        return [head for row in rows if (head := _row(row)) is not None]


def _row(row: Any) -> tuple[SignedTreeHead, int] | None:
    if row is None:
        return None
    head, last = (row["head"], row["last_notification_id"]) if isinstance(row, dict) else row
    return SignedTreeHead.from_dict(head), int(last)
