"""The projections' own PostgreSQL tables: checkpoints, dead-lettered positions and status heartbeats.

Checkpoint rows and dead-letter rows are written in the transaction of the batch they cover, so the
read side sees a position as applied and as dead-lettered at the same instant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from projections.core import DeadLetter, quote_ident
from schemas.names import PROJECTION_CHECKPOINTS_TABLE, PROJECTION_DEAD_LETTERS_TABLE, PROJECTION_STATUS_TABLE

CHECKPOINTS = PROJECTION_CHECKPOINTS_TABLE
STATUS = PROJECTION_STATUS_TABLE
DEAD_LETTERS = PROJECTION_DEAD_LETTERS_TABLE

CHECKPOINTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
    projection text NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL DEFAULT 0,
    last_notification_id bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
CREATE TABLE IF NOT EXISTS {STATUS} (
    projection text PRIMARY KEY,
    state text NOT NULL,
    detail text,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {DEAD_LETTERS} (
    projection text NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    "offset" bigint NOT NULL,
    notification_id bigint,
    reason text NOT NULL,
    dead_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition, "offset")
);
CREATE INDEX IF NOT EXISTS {DEAD_LETTERS}_position ON {DEAD_LETTERS} (projection, notification_id);
"""

TopicPart = tuple[str, int]


def ensure_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the schema and the checkpoint, status and dead-letter tables when missing."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    conn.execute(CHECKPOINTS_DDL)
    conn.commit()


def lock_offsets(cur: psycopg.Cursor[Any], checkpoint_name: str) -> dict[TopicPart, int]:
    """Next offsets by partition, row-locked until the transaction ends (serialises batches and swaps)."""
    rows = cur.execute(
        f"SELECT topic, partition, next_offset FROM {CHECKPOINTS} WHERE projection = %s FOR UPDATE",
        (checkpoint_name,),
    ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}


def read_offsets(conn: psycopg.Connection[Any], checkpoint_name: str) -> dict[TopicPart, int]:
    rows = conn.execute(
        f"SELECT topic, partition, next_offset FROM {CHECKPOINTS} WHERE projection = %s", (checkpoint_name,)
    ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}


def add_partitions(cur: psycopg.Cursor[Any], checkpoint_name: str, partitions: Mapping[str, int]) -> None:
    """A checkpoint row at offset 0 for every partition not seen yet."""
    for topic, count in partitions.items():
        for partition in range(count):
            cur.execute(
                f"INSERT INTO {CHECKPOINTS} (projection, topic, partition) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (checkpoint_name, topic, partition),
            )


def write_offsets(
    cur: psycopg.Cursor[Any], checkpoint_name: str, positions: Mapping[TopicPart, tuple[int, int | None]]
) -> None:
    """Advance the checkpoint rows of the partitions this batch read (never backwards)."""
    for (topic, partition), (next_offset, nid) in positions.items():
        cur.execute(
            f"INSERT INTO {CHECKPOINTS} AS c (projection, topic, partition, next_offset, last_notification_id,"
            " updated_at) VALUES (%s, %s, %s, %s, %s, now())"
            " ON CONFLICT (projection, topic, partition) DO UPDATE SET"
            " next_offset = GREATEST(c.next_offset, EXCLUDED.next_offset),"
            " last_notification_id = GREATEST(c.last_notification_id, EXCLUDED.last_notification_id),"
            " updated_at = now()",
            (checkpoint_name, topic, partition, next_offset, nid or 0),
        )


def record_dead_letters(cur: psycopg.Cursor[Any], checkpoint_name: str, dead: Sequence[DeadLetter]) -> None:
    """Remember which positions this build could not apply (the read side refuses to serve them as done)."""
    for letter in dead:
        record = letter.record
        cur.execute(
            f"INSERT INTO {DEAD_LETTERS} (projection, topic, partition, \"offset\", notification_id, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (checkpoint_name, record.topic, record.partition, record.offset, record.notification_id,
             letter.reason[:2000]),
        )


def move_build(cur: psycopg.Cursor[Any], source: str, target: str) -> None:
    """Make the `source` build's checkpoints and dead letters the `target` build's (a rebuild's swap)."""
    cur.execute(
        f"INSERT INTO {CHECKPOINTS} (projection, topic, partition, next_offset, last_notification_id,"
        " updated_at) SELECT %s, topic, partition, next_offset, last_notification_id, now()"
        f" FROM {CHECKPOINTS} WHERE projection = %s"
        " ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
        " last_notification_id = EXCLUDED.last_notification_id, updated_at = now()",
        (target, source),
    )
    cur.execute(f"DELETE FROM {DEAD_LETTERS} WHERE projection = %s", (target,))
    cur.execute(f"UPDATE {DEAD_LETTERS} SET projection = %s WHERE projection = %s", (target, source))
    forget_build(cur, source)


def forget_build(cur: psycopg.Cursor[Any], checkpoint_name: str) -> None:
    """Drop a build's checkpoint and dead-letter rows."""
    cur.execute(f"DELETE FROM {CHECKPOINTS} WHERE projection = %s", (checkpoint_name,))
    cur.execute(f"DELETE FROM {DEAD_LETTERS} WHERE projection = %s", (checkpoint_name,))


def set_status(conn: psycopg.Connection[Any], projection: str, state: str, detail: str = "") -> None:
    """Record a projection's state (live/rebuilding/stopped) and a heartbeat."""
    with conn.transaction():
        conn.execute(
            f"INSERT INTO {STATUS} (projection, state, detail, heartbeat_at) VALUES (%s, %s, %s, now())"
            " ON CONFLICT (projection) DO UPDATE SET state = EXCLUDED.state, detail = EXCLUDED.detail,"
            " heartbeat_at = now()",
            (projection, state, detail),
        )


def clear_status(conn: psycopg.Connection[Any], projection: str) -> None:
    with conn.transaction():
        conn.execute(f"DELETE FROM {STATUS} WHERE projection = %s", (projection,))
