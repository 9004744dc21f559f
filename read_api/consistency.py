"""Read-your-writes, the platform's one rule: has a projection applied every event up to a log position?

A projection has applied position P when the relay has published P and, for each partition of the
projection's topics, either the partition is fully consumed or its `last_notification_id` >= P.
"Fully consumed" compares the checkpoint's `next_offset` with the partition's Kafka end offset, and those
end offsets must have been read after the relay was seen at P or beyond: older ones may not contain P yet.
A position the projection dead-lettered is applied but not reflected: the read is refused, not served stale.
The projection -> topics map comes from the composition root (read_api/ does not import projections/).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
import structlog
from kafka import KafkaConsumer, TopicPartition

from infra.adapters.kafka import bootstrap_servers
from infra.settings import Settings
from read_api.errors import NotCaughtUp, ReadError
from schemas.names import (
    PROJECTION_CHECKPOINTS_TABLE,
    PROJECTION_DEAD_LETTERS_TABLE,
    RELAY_NAME,
    RELAY_POSITIONS_TABLE,
)

log = structlog.get_logger(__name__)

# Written by projections/checkpoints.py in the transaction that advances the checkpoint past the position.
DEAD_LETTERS_TABLE = PROJECTION_DEAD_LETTERS_TABLE
# A broker slower than this leaves the position "not known yet": reads keep polling within their own bound.
END_OFFSETS_TIMEOUT_MS = 2_000
TopicPart = tuple[str, int]
Conn = psycopg.Connection[Any]
# Projection name (as in projection_checkpoints) -> the topics it consumes.
ProjectionTopics = Mapping[str, tuple[str, ...]]


class PositionDeadLettered(ReadError):
    """`?after=` names a position the projection serving the read could not apply (it went to the DLQ)."""

    status = 409
    code = "read.position_dead_lettered"


@dataclass(frozen=True)
class Checkpoint:
    """One partition's progress in projection_checkpoints."""

    next_offset: int
    last_notification_id: int


@dataclass(frozen=True)
class EndOffsets:
    """Kafka end offsets per partition, read after the relay was seen at `relay_position`."""

    relay_position: int
    offsets: Mapping[TopicPart, int]
    fetched_at: float


class EndOffsetSource(Protocol):
    """Where end offsets come from (Kafka in production, a fixed map in tests)."""

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPart, int]: ...


def watermark(relay_position: int, offsets: Mapping[TopicPart, int],
              checkpoints: Mapping[TopicPart, Checkpoint]) -> int:
    """The highest position P the projection has surely applied: every P' <= it is caught up."""
    level = relay_position
    for part, end in offsets.items():
        checkpoint = checkpoints.get(part, Checkpoint(0, 0))
        if checkpoint.next_offset < end:
            level = min(level, checkpoint.last_notification_id)
    return level


def is_caught_up(position: int, relay_position: int, offsets: Mapping[TopicPart, int],
                 checkpoints: Mapping[TopicPart, Checkpoint]) -> bool:
    """The contract's rule, given end offsets read after the relay passed `position`."""
    return position <= watermark(relay_position, offsets, checkpoints)


class KafkaEndOffsets:
    """End offsets (last stable offsets, as read_committed consumers see them) from the real cluster."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPart, int]:
        # A KafkaConsumer is not thread-safe; reads wait on worker threads.
        with self._lock:
            consumer = self._connect()
            parts = [TopicPartition(topic, p) for topic in topics for p in consumer.partitions_for_topic(topic) or ()]
            ends = consumer.end_offsets(parts, timeout_ms=END_OFFSETS_TIMEOUT_MS) if parts else {}
            return {(part.topic, part.partition): int(end) for part, end in ends.items()}

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _connect(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap_servers(self._settings),
                client_id="bazaar-read-api-watermark",
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                allow_auto_create_topics=False,
            )
        return self._consumer


class LogWatermark:
    """The contract's rule over projection_checkpoints, bazaar_relay_positions and Kafka end offsets."""

    def __init__(self, source: EndOffsetSource, topics: ProjectionTopics, relay_name: str = RELAY_NAME,
                 ttl_s: float = 0.1) -> None:
        self._source = source
        self._topics = topics
        self._relay_name = relay_name
        self._ttl_s = ttl_s
        self._cache: dict[tuple[str, ...], EndOffsets] = {}
        self._lock = threading.Lock()

    def caught_up(self, conn: Conn, projection: str, position: int) -> bool:
        """Has `projection` applied every event with notification id <= position?"""
        relay = relay_position(conn, self._relay_name)
        if relay < position:
            return False
        ends = self._offsets_covering(self.topics_of(projection), position, relay)
        if ends is None:
            return False
        return is_caught_up(position, relay, ends.offsets, checkpoints(conn, projection))

    def dead_letter(self, conn: Conn, projection: str, position: int) -> str | None:
        """Why the projection could not apply `position`, when it dead-lettered it."""
        try:
            row = conn.execute(
                f"SELECT reason FROM {DEAD_LETTERS_TABLE} WHERE projection = %s AND notification_id = %s LIMIT 1",
                (projection, position),
            ).fetchone()
        except psycopg.errors.UndefinedTable:  # projections that never ran dead-lettered nothing
            _rollback_if_needed(conn)
            return None
        return str(row[0]) if row else None

    def current(self, conn: Conn, projection: str) -> dict[str, Any]:
        """The projection's watermark and the relay position, for a 408's details."""
        relay = relay_position(conn, self._relay_name)
        topics = self.topics_of(projection)
        self._offsets_covering(topics, relay, relay)
        with self._lock:
            latest = self._cache.get(topics)
        level = 0
        if latest is not None:
            level = watermark(min(relay, latest.relay_position), latest.offsets, checkpoints(conn, projection))
        return {"projection": projection, "watermark": level, "relay_position": relay}

    def topics_of(self, projection: str) -> tuple[str, ...]:
        if projection not in self._topics:
            raise KeyError(f"unknown projection {projection!r}")
        return self._topics[projection]

    def _offsets_covering(self, topics: tuple[str, ...], position: int, relay: int) -> EndOffsets | None:
        """Cached end offsets read after the relay passed `position`; refetched at most once per ttl."""
        with self._lock:
            cached = self._cache.get(topics)
            if cached is not None and cached.relay_position >= position:
                return cached
            if cached is not None and time.monotonic() - cached.fetched_at < self._ttl_s:
                return None  # fetched moments ago: the caller polls again rather than hammer the broker
            try:
                fresh = EndOffsets(relay, self._source.end_offsets(topics), time.monotonic())
            except Exception as exc:  # noqa: BLE001 - an unreachable broker means "not known yet", not a 500
                log.warning("read.watermark.end_offsets_failed", topics=topics, error=str(exc))
                return None
            self._cache[topics] = fresh
            return fresh


def relay_position(conn: Conn, name: str = RELAY_NAME) -> int:
    """The last notification id the relay has published (0 before the relay first ran)."""
    try:
        row = conn.execute(
            f"SELECT notification_id FROM {RELAY_POSITIONS_TABLE} WHERE name = %s", (name,)
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        _rollback_if_needed(conn)
        return 0
    return int(row[0]) if row else 0


def checkpoints(conn: Conn, projection: str) -> dict[TopicPart, Checkpoint]:
    """Per-partition progress of one projection."""
    rows = conn.execute(
        f"SELECT topic, partition, next_offset, last_notification_id FROM {PROJECTION_CHECKPOINTS_TABLE}"
        " WHERE projection = %s",
        (projection,),
    ).fetchall()
    return {(row[0], int(row[1])): Checkpoint(int(row[2]), int(row[3] or 0)) for row in rows}


def _rollback_if_needed(conn: Conn) -> None:
    if not conn.autocommit:
        conn.rollback()


class Waiter:
    """Blocks a read until its projection reaches `?after=`: NotCaughtUp after the limit, and
    PositionDeadLettered when the projection reached it without applying it."""

    def __init__(self, rule: LogWatermark, timeout_s: float, poll_s: float) -> None:
        self._rule = rule
        self._timeout_s = timeout_s
        self._poll_s = poll_s

    def wait(self, conn: Conn, projections: Sequence[str], position: int | None) -> None:
        """Return once every projection named has applied `position` (at once when it is None)."""
        if position is None:
            return
        deadline = time.monotonic() + self._timeout_s
        for projection in projections:
            while not self._rule.caught_up(conn, projection, position):
                if time.monotonic() >= deadline:
                    details = {**self._rule.current(conn, projection), "after": position}
                    raise NotCaughtUp(f"{projection} has not applied position {position} yet; retry", details)
                time.sleep(self._poll_s)
            reason = self._rule.dead_letter(conn, projection, position)
            if reason is not None:
                raise PositionDeadLettered(
                    f"{projection} could not apply position {position} (dead-lettered): this read would be stale",
                    {"projection": projection, "after": position, "reason": reason},
                )
