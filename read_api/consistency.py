"""Read-your-writes: has a projection applied every event up to a log position? (docs/READ_MODELS.md)

A projection has applied position P when the relay has published P and, for each partition of the
projection's topics, either the partition is fully consumed or its `last_notification_id` >= P.
"Fully consumed" compares the checkpoint's `next_offset` with the partition's Kafka end offset, and those
end offsets must have been read after the relay was seen at P or beyond: older ones may not contain P yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
import structlog
from kafka import KafkaConsumer, TopicPartition

from infra.adapters.kafka import bootstrap_servers
from infra.settings import Settings
from read_api.errors import NotCaughtUp
from schemas.messages import TOPIC_PREFIX

log = structlog.get_logger(__name__)

RELAY_NAME = "main"
# A broker slower than this leaves the position "not known yet": reads keep polling within their own bound.
END_OFFSETS_TIMEOUT_MS = 2_000
TopicPart = tuple[str, int]
Conn = psycopg.Connection[Any]
CaughtUp = Callable[[Conn, str, int], bool]

# Projection names as projections/ stores them in projection_checkpoints, and the aggregates they consume.
PROJECTION_AGGREGATES: Mapping[str, tuple[str, ...]] = {
    "listings": ("listing",),
    "search": ("listing",),
    "vectors": ("listing",),
    "orders": ("order",),
    "wallets": ("wallet",),
    "dashboard": ("listing", "order"),
    "licences": ("licence",),
    "trust": ("trust",),
}


def projection_topics(prefix: str = TOPIC_PREFIX) -> dict[str, tuple[str, ...]]:
    """Each projection's topics under a topic prefix (`bazaar.` in production)."""
    return {name: tuple(f"{prefix}{aggregate}" for aggregate in aggregates)
            for name, aggregates in PROJECTION_AGGREGATES.items()}


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

    def __init__(self, source: EndOffsetSource, topics: Mapping[str, tuple[str, ...]] | None = None,
                 relay_name: str = RELAY_NAME, ttl_s: float = 0.1) -> None:
        self._source = source
        self._topics = topics if topics is not None else projection_topics()
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
            "SELECT notification_id FROM bazaar_relay_positions WHERE name = %s", (name,)
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        _rollback_if_needed(conn)
        return 0
    return int(row[0]) if row else 0


def checkpoints(conn: Conn, projection: str) -> dict[TopicPart, Checkpoint]:
    """Per-partition progress of one projection."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset, last_notification_id FROM projection_checkpoints"
        " WHERE projection = %s",
        (projection,),
    ).fetchall()
    return {(row[0], int(row[1])): Checkpoint(int(row[2]), int(row[3] or 0)) for row in rows}


def _rollback_if_needed(conn: Conn) -> None:
    if not conn.autocommit:
        conn.rollback()


def projections_caught_up() -> CaughtUp | None:
    """projections/watermark.py's `caught_up` when that module exists: the projections own the rule."""
    try:
        from projections.watermark import caught_up
    except ImportError:
        return None
    found: CaughtUp = caught_up
    return found


class Waiter:
    """Blocks a read until its projection reaches `?after=`, or raises NotCaughtUp after the limit."""

    def __init__(self, caught_up: CaughtUp, describe: Callable[[Conn, str], dict[str, Any]],
                 timeout_s: float, poll_s: float) -> None:
        self._caught_up = caught_up
        self._describe = describe
        self._timeout_s = timeout_s
        self._poll_s = poll_s

    def wait(self, conn: Conn, projections: Sequence[str], position: int | None) -> None:
        """Return once every projection named has applied `position` (at once when it is None)."""
        if position is None:
            return
        deadline = time.monotonic() + self._timeout_s
        for projection in projections:
            while not self._caught_up(conn, projection, position):
                if time.monotonic() >= deadline:
                    details = {**self._describe(conn, projection), "after": position}
                    raise NotCaughtUp(f"{projection} has not applied position {position} yet; retry", details)
                time.sleep(self._poll_s)
