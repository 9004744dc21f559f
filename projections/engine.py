"""The one way a batch is applied: live consumption (Faust), catch-up and rebuild all call `apply_batch`.

A `Projector` binds a projection to a PostgreSQL connection and a table suffix (the live tables have none;
a rebuild writes `<table>__next` beside them). One batch is one transaction: lock the checkpoint rows, skip
records below the stored next offset of their partition (any redelivery is harmless), apply the rest,
dead-letter what cannot be applied, advance the checkpoints. Handlers also skip events whose aggregate
version is not above the row's, so a duplicate published at a new offset changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pydantic import ValidationError

from projections import checkpoints
from projections.core import (
    TRANSIENT_ERRORS,
    DeadLetter,
    Projection,
    ProjectionDataError,
    Record,
    Tables,
    quote_ident,
    schema_of,
    table_exists,
)
from schemas.base import EventSchema
from schemas.messages import PoisonMessage, decode_event

# What an event handler may raise for a bad event (anything else aborts the batch and is retried).
EVENT_ERRORS: tuple[type[BaseException], ...] = (
    ProjectionDataError, ValidationError, psycopg.Error, ValueError, TypeError, KeyError,
)
Positions = dict[tuple[str, int], tuple[int, int | None]]


@dataclass
class BatchResult:
    """What one batch did."""

    applied: int = 0
    skipped: int = 0
    dead: list[DeadLetter] = field(default_factory=list)


class Projector:
    """Applies batches of records of one projection build, checkpointing in the same transaction."""

    def __init__(self, projection: Projection, conn: psycopg.Connection[Any], *, suffix: str = "",
                 partitions: Mapping[str, int] | None = None) -> None:
        self.projection = projection
        self.conn = conn
        self.tables = Tables(suffix)
        self.checkpoint_name = f"{projection.name}{suffix}"
        self.partitions = dict(partitions or {})
        self._handlers = projection.handlers_by_name()
        # Called with a batch's dead letters before its commit (the DLQ sink flushes to Kafka).
        self.on_dead: Callable[[Sequence[DeadLetter]], None] | None = None

    def setup(self) -> None:
        """Create missing tables and a checkpoint row (offset 0) for every known partition."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            if self.projection.shared_ddl:
                cur.execute(self.projection.shared_ddl)
            for logical, ddl in self.projection.tables.items():
                physical = quote_ident(self.tables[logical])
                if not table_exists(cur, f"{schema_of(cur)}.{physical}"):
                    cur.execute(ddl.format(t=physical))
            checkpoints.add_partitions(cur, self.checkpoint_name, self.partitions)

    def drop(self) -> None:
        """Drop this build's tables, checkpoint and dead-letter rows (a failed or stale rebuild)."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            for logical in self.projection.tables:
                cur.execute(f"DROP TABLE IF EXISTS {quote_ident(self.tables[logical])}")
            checkpoints.forget_build(cur, self.checkpoint_name)

    def offsets(self) -> dict[tuple[str, int], int]:
        """Stored next offsets by (topic, partition)."""
        with self.conn.transaction():
            return checkpoints.read_offsets(self.conn, self.checkpoint_name)

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
            # The row locks serialise this batch with a concurrent rebuild swap (see rebuild._swap).
            stored = checkpoints.lock_offsets(cur, self.checkpoint_name)
            positions: Positions = {}
            # Pipeline mode sends the handlers' statements without a round trip each (rebuild speed);
            # the isolated retry runs them one by one to find the failing event.
            with contextlib.nullcontext() if isolate else self.conn.pipeline():
                applied = [event for record in self._unseen(records, stored, positions, result)
                           if (event := self._apply_one(cur, record, result, isolate)) is not None]
            if applied:
                self.projection.after_batch(cur, self.tables, applied)
            if result.dead:
                if self.on_dead is not None:
                    self.on_dead(result.dead)
                checkpoints.record_dead_letters(cur, self.checkpoint_name, result.dead)
            checkpoints.write_offsets(cur, self.checkpoint_name, positions)
        return result

    @staticmethod
    def _unseen(records: Sequence[Record], stored: Mapping[tuple[str, int], int], positions: Positions,
                result: BatchResult) -> list[Record]:
        """The records at or past their partition's checkpoint; `positions` gets each partition's advance."""
        unseen = []
        for record in records:
            tp = (record.topic, record.partition)
            if record.offset < stored.get(tp, 0):
                result.skipped += 1
                continue
            nid = record.notification_id
            positions[tp] = (record.offset + 1, nid if nid is not None else positions.get(tp, (0, None))[1])
            unseen.append(record)
        return unseen

    def _apply_one(self, cur: psycopg.Cursor[Any], record: Record, result: BatchResult,
                   isolate: bool) -> EventSchema | None:
        try:
            event = decode_event(record.value, record.headers)
        except PoisonMessage as exc:
            result.dead.append(DeadLetter(record, self.projection.name, exc.reason))
            return None
        handler = self._handlers.get(event.schema_name)
        if handler is None:
            result.skipped += 1
            return event
        position = record.notification_id or 0
        if not isolate:
            handler(cur, self.tables, event, position)
            result.applied += 1
            return event
        try:
            with self.conn.transaction():
                handler(cur, self.tables, event, position)
        except TRANSIENT_ERRORS:
            raise
        except EVENT_ERRORS as exc:
            result.dead.append(DeadLetter(record, self.projection.name,
                                          f"{event.schema_name}: {type(exc).__name__}: {exc}"))
            return None
        result.applied += 1
        return event
