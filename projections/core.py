"""The projection framework: a projection's handlers apply a batch of Kafka records in ONE PostgreSQL
transaction together with its `projection_checkpoints` rows, so each record is applied at most once.

A `Projector` binds a projection to a PostgreSQL schema, a topic prefix and a table suffix (the live
tables have none; a rebuild writes `<table>__next` beside them). Records below the stored next offset of
their partition are skipped, which makes any redelivery (Kafka replays, a driver that starts at offset 0,
a restart) harmless; handlers also skip events whose aggregate version is not above the row's version.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psycopg
import structlog
from pydantic import ValidationError

from schemas.base import EventSchema
from schemas.messages import TOPIC_PREFIX, PoisonMessage, decode_event, header_value

log = structlog.get_logger(__name__)

NEXT_SUFFIX = "__next"
OLD_SUFFIX = "__old"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

CHECKPOINTS_DDL = """
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection text NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL DEFAULT 0,
    last_notification_id bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
CREATE TABLE IF NOT EXISTS projection_status (
    projection text PRIMARY KEY,
    state text NOT NULL,
    detail text,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
"""
# Errors that mean "try again later", never "this event is bad": they abort the batch, not the event.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, ConnectionError, TimeoutError)


class ProjectionDataError(ValueError):
    """An event that is valid on the wire but cannot be applied (missing reference, impossible state)."""


@dataclass(frozen=True)
class Record:
    """One consumed Kafka message, independent of the client library that fetched it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int = 0

    @property
    def notification_id(self) -> int | None:
        raw = header_value(self.headers, "notification_id")
        return int(raw) if raw is not None and raw.isdigit() else None


@dataclass(frozen=True)
class DeadLetter:
    """A record a projection could not apply, with the reason, bound for the dead-letter topic."""

    record: Record
    projection: str
    reason: str

    def headers(self) -> list[tuple[str, bytes]]:
        extra = [
            ("dlq_reason", self.reason[:2000].encode()),
            ("dlq_projection", self.projection.encode()),
            ("dlq_source_topic", self.record.topic.encode()),
            ("dlq_source_partition", str(self.record.partition).encode()),
            ("dlq_source_offset", str(self.record.offset).encode()),
        ]
        return [*self.record.headers, *extra]


class Tables:
    """Maps a projection's logical table names to the physical ones of one build (live or `__next`)."""

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix

    def __getitem__(self, logical: str) -> str:
        return f"{logical}{self.suffix}"


Handler = Callable[[psycopg.Cursor[Any], Tables, EventSchema, int], None]


class Projection:
    """A read model: its topics (aggregates), table DDL (`{t}` = physical name) and handlers by schema name."""

    name: ClassVar[str]
    aggregates: ClassVar[tuple[str, ...]]
    # logical table name -> DDL creating it and its indexes, `{t}` standing for the physical name
    tables: ClassVar[Mapping[str, str]]
    # tables the projection needs but never rebuilds (filled by other writers)
    shared_ddl: ClassVar[str] = ""

    def handlers(self) -> Mapping[str, Handler]:
        """Schema name -> handler; other events of the topics are ignored."""
        raise NotImplementedError

    def topics(self, prefix: str) -> list[str]:
        return [f"{prefix}{aggregate}" for aggregate in self.aggregates]

    def after_batch(self, cur: psycopg.Cursor[Any], tables: Tables, events: Sequence[EventSchema]) -> None:
        """Hook run inside the batch transaction after the handlers (external stores write here)."""


@dataclass
class BatchResult:
    """What one batch did."""

    applied: int = 0
    skipped: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    oldest_ms: int | None = None


def quote_ident(name: str) -> str:
    """A checked identifier: projection tables and schemas are ours, never user input, but check anyway."""
    if not _IDENT.match(name):
        raise ValueError(f"bad identifier {name!r}")
    return name


def connect(conninfo: str, schema: str) -> psycopg.Connection[Any]:
    """A connection whose search_path puts `schema` first (public stays reachable for the vector type)."""
    conn = psycopg.connect(conninfo, autocommit=False, prepare_threshold=None)
    _register_vector(conn)
    conn.execute(f"SET search_path TO {quote_ident(schema)}, public")
    conn.commit()
    return conn


def _register_vector(conn: psycopg.Connection[Any]) -> None:
    try:
        from pgvector.psycopg import register_vector

        register_vector(conn)
    except (ImportError, psycopg.ProgrammingError):
        pass
    conn.rollback()


def ensure_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the schema and the checkpoint/status tables when missing."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    conn.execute(CHECKPOINTS_DDL)
    conn.commit()


def table_exists(cur: psycopg.Cursor[Any], name: str) -> bool:
    row = cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def schema_of(cur: psycopg.Cursor[Any]) -> str:
    row = cur.execute("SELECT current_schema()").fetchone()
    return str(row[0]) if row else "public"


class Projector:
    """Applies batches of records of one projection build, checkpointing in the same transaction."""

    def __init__(
        self,
        projection: Projection,
        conn: psycopg.Connection[Any],
        *,
        topic_prefix: str = TOPIC_PREFIX,
        suffix: str = "",
        partitions: Mapping[str, int] | None = None,
    ) -> None:
        self.projection = projection
        self.conn = conn
        self.topic_prefix = topic_prefix
        self.tables = Tables(suffix)
        self.checkpoint_name = f"{projection.name}{suffix}"
        self.partitions = dict(partitions or {})
        self._handlers = projection.handlers()
        # Called with a batch's dead letters before its commit (the DLQ sink flushes to Kafka).
        self.on_dead: Callable[[Sequence[DeadLetter]], None] | None = None

    # -- setup ------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create missing tables and a checkpoint row (offset 0) for every known partition."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            if self.projection.shared_ddl:
                cur.execute(self.projection.shared_ddl)
            for logical, ddl in self.projection.tables.items():
                physical = quote_ident(self.tables[logical])
                if not table_exists(cur, f"{schema_of(cur)}.{physical}"):
                    cur.execute(ddl.format(t=physical))
            for topic, count in self.partitions.items():
                for partition in range(count):
                    cur.execute(
                        "INSERT INTO projection_checkpoints (projection, topic, partition) VALUES (%s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        (self.checkpoint_name, topic, partition),
                    )

    def drop(self) -> None:
        """Drop this build's tables and checkpoint rows (a failed or stale rebuild)."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            for logical in self.projection.tables:
                cur.execute(f"DROP TABLE IF EXISTS {quote_ident(self.tables[logical])}")
            cur.execute("DELETE FROM projection_checkpoints WHERE projection = %s", (self.checkpoint_name,))

    def offsets(self) -> dict[tuple[str, int], int]:
        """Stored next offsets by (topic, partition)."""
        with self.conn.transaction():
            return read_offsets(self.conn, self.checkpoint_name)

    # -- applying ---------------------------------------------------------------------------------------

    def apply_batch(self, records: Sequence[Record]) -> BatchResult:
        """Apply records in one transaction; on an event error, redo the batch with one savepoint per event."""
        try:
            with self.conn.transaction():
                return self._apply(records, isolate=False)
        except TRANSIENT_ERRORS:
            raise
        except Exception:  # one bad event: find it without losing the others
            with self.conn.transaction():
                return self._apply(records, isolate=True)

    def _apply(self, records: Sequence[Record], *, isolate: bool) -> BatchResult:
        result = BatchResult()
        with self.conn.cursor() as cur:
            # The row locks serialise this batch with a concurrent rebuild swap (see runner._swap).
            stored = lock_offsets(cur, self.checkpoint_name)
            positions: dict[tuple[str, int], tuple[int, int | None]] = {}
            # Pipeline mode sends the handlers' statements without a round trip each (rebuild speed);
            # the isolated retry runs them one by one to find the failing event.
            with contextlib.nullcontext() if isolate else self.conn.pipeline():
                applied_events = self._apply_records(cur, records, stored, positions, result, isolate)
            if applied_events:
                self.projection.after_batch(cur, self.tables, applied_events)
            if result.dead and self.on_dead is not None:
                self.on_dead(result.dead)
            write_offsets(cur, self.checkpoint_name, positions)
        return result

    def _apply_records(
        self,
        cur: psycopg.Cursor[Any],
        records: Sequence[Record],
        stored: Mapping[tuple[str, int], int],
        positions: dict[tuple[str, int], tuple[int, int | None]],
        result: BatchResult,
        isolate: bool,
    ) -> list[EventSchema]:
        applied_events: list[EventSchema] = []
        for record in records:
            tp = (record.topic, record.partition)
            if record.offset < stored.get(tp, 0):
                result.skipped += 1
                continue
            previous = positions.get(tp, (0, None))[1]
            nid = record.notification_id
            positions[tp] = (record.offset + 1, nid if nid is not None else previous)
            event = self._apply_one(cur, record, result, isolate)
            if event is not None:
                applied_events.append(event)
                oldest = result.oldest_ms
                result.oldest_ms = record.timestamp_ms if oldest is None else min(oldest, record.timestamp_ms)
        return applied_events

    def _apply_one(
        self, cur: psycopg.Cursor[Any], record: Record, result: BatchResult, isolate: bool
    ) -> EventSchema | None:
        try:
            event = decode_event(record.value, record.headers)
        except PoisonMessage as exc:
            result.dead.append(DeadLetter(record, self.projection.name, exc.reason))
            return None
        handler = self._handlers.get(event.schema_name)
        if handler is None:
            result.skipped += 1
            return event
        if not isolate:
            handler(cur, self.tables, event, record.notification_id or 0)
            result.applied += 1
            return event
        try:
            with self.conn.transaction():
                handler(cur, self.tables, event, record.notification_id or 0)
        except TRANSIENT_ERRORS:
            raise
        except (ProjectionDataError, ValidationError, psycopg.Error, ValueError, TypeError, KeyError) as exc:
            reason = f"{event.schema_name}: {type(exc).__name__}: {exc}"
            result.dead.append(DeadLetter(record, self.projection.name, reason))
            return None
        result.applied += 1
        return event


def lock_offsets(cur: psycopg.Cursor[Any], checkpoint_name: str) -> dict[tuple[str, int], int]:
    rows = cur.execute(
        "SELECT topic, partition, next_offset FROM projection_checkpoints WHERE projection = %s FOR UPDATE",
        (checkpoint_name,),
    ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}


def read_offsets(conn: psycopg.Connection[Any], checkpoint_name: str) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM projection_checkpoints WHERE projection = %s",
        (checkpoint_name,),
    ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}


def write_offsets(
    cur: psycopg.Cursor[Any], checkpoint_name: str, positions: Mapping[tuple[str, int], tuple[int, int | None]]
) -> None:
    """Advance the checkpoint rows of the partitions this batch read (never backwards)."""
    for (topic, partition), (next_offset, nid) in positions.items():
        cur.execute(
            "INSERT INTO projection_checkpoints AS c (projection, topic, partition, next_offset,"
            " last_notification_id, updated_at) VALUES (%s, %s, %s, %s, %s, now())"
            " ON CONFLICT (projection, topic, partition) DO UPDATE SET"
            " next_offset = GREATEST(c.next_offset, EXCLUDED.next_offset),"
            " last_notification_id = GREATEST(c.last_notification_id, EXCLUDED.last_notification_id),"
            " updated_at = now()",
            (checkpoint_name, topic, partition, next_offset, nid or 0),
        )


def set_status(conn: psycopg.Connection[Any], projection: str, state: str, detail: str = "") -> None:
    """Record a projection's state (live/rebuilding/stopped) and a heartbeat."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO projection_status (projection, state, detail, heartbeat_at) VALUES (%s, %s, %s, now())"
            " ON CONFLICT (projection) DO UPDATE SET state = EXCLUDED.state, detail = EXCLUDED.detail,"
            " heartbeat_at = now()",
            (projection, state, detail),
        )


def now_ms() -> int:
    return int(time.time() * 1000)


def by_name(projections: Iterable[Projection]) -> dict[str, Projection]:
    return {p.name: p for p in projections}
