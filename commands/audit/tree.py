"""The log's Merkle tree kept in PostgreSQL: every perfect subtree's hash, appended by the relay.

As Trillian and CT logs do, the relay stores the node hashes it computes while appending leaves
(`bazaar_audit_tree`: level, position, hash), in the same transaction as its position. A proof then reads
the O(log n) nodes it needs in one query instead of rehashing the log: flat cost from 10k to 1M events.
The table is append-only by trigger, like the events. Nothing here is trusted by an auditor: a proof
built from these nodes checks against a signed head or it does not, and `audit verify` recomputes the
nodes' root and compares it with the signed heads before it uses them to locate a rewritten leaf.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection, sql

from commands.audit.merkle import (
    MerkleLog,
    NodeMap,
    ProofError,
    nodes_for_consistency,
    nodes_for_inclusion,
)

# Only the audit package reads or writes it, so its name lives here rather than in schemas/names.py.
TREE_TABLE = "bazaar_audit_tree"

_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} ("
    " level smallint NOT NULL, position bigint NOT NULL, hash bytea NOT NULL,"
    " notification_id bigint, PRIMARY KEY (level, position))"
)
# Leaves carry their event's notification id: a proof finds its leaf index by index lookup.
_LEAF_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {table} (notification_id) WHERE level = 0"
_REFUSE = (
    "CREATE OR REPLACE FUNCTION bazaar_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN RAISE EXCEPTION 'the audit trail is append-only: % refused on %', TG_OP, TG_TABLE_NAME"
    " USING ERRCODE = 'insufficient_privilege'; END $$"
)
_TRIGGER = (
    "CREATE OR REPLACE TRIGGER {name} BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}"
    " FOR EACH STATEMENT EXECUTE FUNCTION bazaar_audit_refuse_change()"
)


def make_append_only(conn: Connection[Any], table: str) -> None:
    """Refuse UPDATE, DELETE and TRUNCATE on an audit table (in the connection's search_path)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('bazaar.audit.ddl'))")
    conn.execute(_REFUSE)
    conn.execute(
        sql.SQL(_TRIGGER).format(name=sql.Identifier(f"{table}_append_only"), table=sql.Identifier(table))
    )


def create_tree_table(conn: Connection[Any]) -> None:
    """The nodes table, append-only (idempotent)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('bazaar.audit.ddl'))")
        conn.execute(sql.SQL(_DDL).format(table=sql.Identifier(TREE_TABLE)))
        conn.execute(sql.SQL(_LEAF_INDEX).format(name=sql.Identifier(f"{TREE_TABLE}_leaf_nid"),
                                                  table=sql.Identifier(TREE_TABLE)))
        make_append_only(conn, TREE_TABLE)


def tree_table_exists(conn: Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (TREE_TABLE,)).fetchone()
    return row is not None and row[0] is not None


def append_nodes(
    conn: Connection[Any], tree: MerkleLog, old_size: int, notification_ids: Sequence[int]
) -> None:
    """Store the nodes the leaves [old_size, tree.size) completed; notification_ids are those leaves' events.

    A node already stored (a batch published again after a crash) is left as it was.
    """
    rows = tree.nodes_completed(old_size)
    if not rows:
        return
    nids = [notification_ids[position - old_size] if level == 0 else None for level, position, _ in rows]
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (level, position, hash, notification_id)"
            " SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[], %s::bigint[])"
            " ON CONFLICT DO NOTHING"
        ).format(sql.Identifier(TREE_TABLE)),
        ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], nids),
    )


def stored_leaf_count(conn: Connection[Any]) -> int:
    """How many leaves the stored tree holds (0 without a table)."""
    if not tree_table_exists(conn):
        return 0
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(position) + 1, 0) FROM {} WHERE level = 0").format(sql.Identifier(TREE_TABLE))
    ).fetchone()
    return int(row[0]) if row else 0


def backfill(conn: Connection[Any], tree: MerkleLog, notification_ids: Sequence[int]) -> int:
    """Store the nodes of an in-memory tree beyond what the table holds; how many leaves were added.

    The relay calls it on start, so a log relayed before nodes were stored gets them once.
    """
    stored = min(stored_leaf_count(conn), tree.size)
    if stored < tree.size:
        append_nodes(conn, tree, stored, notification_ids[stored:])
    return tree.size - stored


def leaf_index(conn: Connection[Any], notification_id: int) -> int | None:
    """The leaf position of an event in the stored tree, or None when it is not in it (yet)."""
    if not tree_table_exists(conn):
        return None
    row = conn.execute(
        sql.SQL("SELECT position FROM {} WHERE level = 0 AND notification_id = %s").format(
            sql.Identifier(TREE_TABLE)
        ),
        (notification_id,),
    ).fetchone()
    return int(row[0]) if row else None


def read_nodes(conn: Connection[Any], size: int, wanted: set[tuple[int, int]]) -> NodeMap:
    """The stored nodes asked for, as a tree of `size` leaves (ProofError later if one is missing)."""
    levels = [level for level, _ in wanted]
    positions = [position for _, position in wanted]
    rows = conn.execute(
        sql.SQL(
            "SELECT t.level, t.position, t.hash FROM {} t"
            " JOIN unnest(%s::smallint[], %s::bigint[]) AS w(level, position)"
            " ON t.level = w.level AND t.position = w.position"
        ).format(sql.Identifier(TREE_TABLE)),
        (levels, positions),
    ).fetchall()
    return NodeMap(size, {(int(level), int(position)): bytes(digest) for level, position, digest in rows})


def stored_leaves(conn: Connection[Any], size: int) -> MerkleLog:
    """The stored leaves [0, size) rebuilt into a tree (for verify, which checks its root against heads)."""
    tree = MerkleLog()
    with conn.cursor(name="bazaar_audit_tree_scan", binary=True) as cursor:
        cursor.itersize = 10_000
        cursor.execute(
            sql.SQL("SELECT position, hash FROM {} WHERE level = 0 AND position < %s ORDER BY position").format(
                sql.Identifier(TREE_TABLE)
            ),
            (size,),
        )
        for position, digest in cursor:
            if position != tree.size:
                break  # a gap: the stored tree stops being usable here
            tree.append(bytes(digest))
    return tree


def inclusion_nodes(conn: Connection[Any], index: int, size: int) -> NodeMap:
    """What the inclusion proof of leaf index at size reads, from the table."""
    if not tree_table_exists(conn):
        raise ProofError("the relay has not stored the tree's nodes yet")
    return read_nodes(conn, size, nodes_for_inclusion(index, size))


def consistency_nodes(conn: Connection[Any], old: int, new: int) -> NodeMap:
    """What the consistency proof between sizes old and new reads, from the table."""
    if not tree_table_exists(conn):
        raise ProofError("the relay has not stored the tree's nodes yet")
    return read_nodes(conn, new, nodes_for_consistency(old, new))
