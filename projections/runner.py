"""Drivers of projections on kafka-python: catch-up, the live loop, rebuild-and-swap, and status.

Consumers use manual `assign` + `seek` to the offsets stored in `projection_checkpoints` (no consumer group):
PostgreSQL, not Kafka, knows what a projection has applied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from infra.adapters.kafka import make_consumer, make_producer
from infra.adapters.search import SearchPort
from infra.settings import Settings
from projections import models
from projections.core import (
    NEXT_SUFFIX,
    OLD_SUFFIX,
    TRANSIENT_ERRORS,
    BatchResult,
    DeadLetter,
    Projection,
    Projector,
    Record,
    connect,
    ensure_schema,
    lock_offsets,
    quote_ident,
    read_offsets,
    set_status,
)
from projections.search import DEFAULT_ALIAS, INDEX_SETTINGS, MAPPINGS, SearchProjection, ensure_alias, next_index_name
from schemas.messages import TOPIC_PREFIX

log = structlog.get_logger(__name__)

BATCH_SIZE = 1000
POLL_TIMEOUT_MS = 100
HEARTBEAT_S = 5.0
LIVE_WITHIN_S = 30.0
SWAP_LOCK_TIMEOUT = "10s"


@dataclass(frozen=True)
class ProjectionConfig:
    """Where projections read and write: topic prefix, PostgreSQL schema and search alias (tests isolate all)."""

    settings: Settings
    topic_prefix: str = TOPIC_PREFIX
    schema: str = "public"
    index_alias: str = DEFAULT_ALIAS
    batch_size: int = BATCH_SIZE
    names: tuple[str, ...] = field(default=())

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}projections.dlq"

    def connect(self) -> psycopg.Connection[Any]:
        return connect(self.settings.pg_conninfo, self.schema)

    def search_port(self) -> SearchPort:
        return SearchPort.from_settings(self.settings)


def make_projections(config: ProjectionConfig, port: SearchPort | None = None) -> list[Projection]:
    """Every projection (or those named in config.names), in a stable order."""
    search = SearchProjection(port or config.search_port(), config.index_alias)
    every: list[Projection] = [
        models.ListingsProjection(), models.OrdersProjection(), models.WalletsProjection(),
        models.DashboardProjection(), models.LicencesProjection(), models.TrustProjection(),
        models.VectorsProjection(), search,
    ]
    return [p for p in every if not config.names or p.name in config.names]


PROJECTION_CLASSES: tuple[type[Projection], ...] = (
    models.ListingsProjection, models.OrdersProjection, models.WalletsProjection, models.DashboardProjection,
    models.LicencesProjection, models.TrustProjection, models.VectorsProjection, SearchProjection,
)


def projection_names() -> list[str]:
    return [cls.name for cls in PROJECTION_CLASSES]


def get_projection_topics(name: str, topic_prefix: str = TOPIC_PREFIX) -> list[str]:
    """The topics a projection consumes, without building it."""
    for cls in PROJECTION_CLASSES:
        if cls.name == name:
            return [f"{topic_prefix}{aggregate}" for aggregate in cls.aggregates]
    raise KeyError(f"no projection {name!r}; known: {', '.join(projection_names())}")


def get_projection(config: ProjectionConfig, name: str, port: SearchPort | None = None) -> Projection:
    for projection in make_projections(config, port):
        if projection.name == name:
            return projection
    raise KeyError(f"no projection {name!r}; known: {', '.join(projection_names())}")


# -- Kafka side --------------------------------------------------------------------------------------------


class KafkaSource:
    """A group-less consumer assigned every partition of some topics, positioned by our checkpoints."""

    def __init__(self, settings: Settings, topics: Sequence[str], batch_size: int = BATCH_SIZE) -> None:
        self.consumer: KafkaConsumer = make_consumer(
            settings, group_id=None, max_poll_records=batch_size, fetch_max_wait_ms=50,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.partitions = {topic: partition_count(self.consumer, topic) for topic in topics}
        self.tps = [TopicPartition(t, p) for t, n in self.partitions.items() for p in range(n)]
        self.consumer.assign(self.tps)

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        for tp in self.tps:
            self.consumer.seek(tp, offsets.get((tp.topic, tp.partition), 0))

    def poll(self, max_records: int, timeout_ms: int = POLL_TIMEOUT_MS) -> list[Record]:
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [to_record(message) for messages in batches.values() for message in messages]

    def end_offsets(self) -> dict[tuple[str, int], int]:
        ends = self.consumer.end_offsets(self.tps)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        self.consumer.close()


def partition_count(consumer: KafkaConsumer, topic: str, wait_s: float = 10.0) -> int:
    """Partitions of a topic, waiting for metadata (a topic must exist: projections never create one)."""
    deadline = time.monotonic() + wait_s
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return len(partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} does not exist")
        time.sleep(0.1)


def to_record(message: Any) -> Record:
    headers = tuple((k, bytes(v) if v is not None else b"") for k, v in (message.headers or ()))
    return Record(message.topic, message.partition, message.offset, message.key, message.value or b"",
                  headers, int(message.timestamp or 0))


class DeadLetterSink:
    """Sends dead letters to the DLQ topic and waits for the broker before the batch commits."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self._producer: KafkaProducer | None = None
        self._settings = settings

    def __call__(self, dead: Sequence[DeadLetter]) -> None:
        if not dead:
            return
        if self._producer is None:
            self._producer = make_producer(self._settings, client_id="bazaar-projections-dlq")
        for letter in dead:
            self._producer.send(self.topic, key=letter.record.key, value=letter.record.value,
                                headers=letter.headers())
            log.warning("projection.dead_letter", projection=letter.projection, reason=letter.reason,
                        topic=letter.record.topic, offset=letter.record.offset)
        self._producer.flush(timeout=30)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()


# -- catch-up and live -------------------------------------------------------------------------------------


def open_projector(config: ProjectionConfig, projection: Projection, source: KafkaSource,
                   suffix: str = "") -> Projector:
    """A projector with its own connection, tables and checkpoint rows ready."""
    conn = config.connect()
    ensure_schema(conn, config.schema)
    if isinstance(projection, SearchProjection) and not suffix:
        ensure_alias(projection.port, projection.alias)
    projector = Projector(projection, conn, topic_prefix=config.topic_prefix, suffix=suffix,
                          partitions=source.partitions)
    projector.setup()
    return projector


def caught_up_to(positions: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int]) -> bool:
    return all(positions.get(tp, 0) >= end for tp, end in ends.items())


def consume_until(projector: Projector, source: KafkaSource, ends: Mapping[tuple[str, int], int],
                  batch_size: int, on_batch: Callable[[int, BatchResult], None] | None = None) -> int:
    """Apply records until every partition reached `ends`; returns how many records were read."""
    positions = dict(projector.offsets())
    read = 0
    while not caught_up_to(positions, ends):
        records = source.poll(batch_size)
        if not records:
            continue
        result = projector.apply_batch(records)
        for record in records:
            tp = (record.topic, record.partition)
            positions[tp] = max(positions.get(tp, 0), record.offset + 1)
        read += len(records)
        if on_batch is not None:
            on_batch(len(records), result)
    return read


def catch_up(config: ProjectionConfig, names: Sequence[str] | None = None) -> dict[str, int]:
    """Run each projection until it has applied everything on its topics now (tests, one-shot runs)."""
    counts: dict[str, int] = {}
    sink = DeadLetterSink(config.settings, config.dlq_topic)
    try:
        for projection in make_projections(config):
            if names and projection.name not in names:
                continue
            source = KafkaSource(config.settings, projection.topics(config.topic_prefix), config.batch_size)
            projector = open_projector(config, projection, source)
            projector.on_dead = sink
            try:
                source.seek(projector.offsets())
                counts[projection.name] = consume_until(projector, source, source.end_offsets(),
                                                        config.batch_size)
            finally:
                source.close()
                projector.conn.close()
    finally:
        sink.close()
    return counts


def run_live(config: ProjectionConfig, projection: Projection, stop: threading.Event) -> None:
    """Apply new records of one projection until `stop` is set; transient failures reconnect and resume."""
    while not stop.is_set():
        try:
            _live_session(config, projection, stop)
        except TRANSIENT_ERRORS as exc:
            log.warning("projection.transient_failure", projection=projection.name, error=str(exc))
            stop.wait(1.0)


def _live_session(config: ProjectionConfig, projection: Projection, stop: threading.Event) -> None:
    source = KafkaSource(config.settings, projection.topics(config.topic_prefix), config.batch_size)
    projector = open_projector(config, projection, source)
    projector.on_dead = sink = DeadLetterSink(config.settings, config.dlq_topic)
    beat = 0.0
    try:
        source.seek(projector.offsets())
        while not stop.is_set():
            if time.monotonic() - beat > HEARTBEAT_S:
                set_status(projector.conn, projection.name, "live")
                beat = time.monotonic()
            records = source.poll(config.batch_size)
            if records:
                projector.apply_batch(records)
                # A rebuild swap may have moved the checkpoint past what we read: skip ahead, never back.
                _skip_to(source, projector)
        set_status(projector.conn, projection.name, "stopped")
    finally:
        sink.close()
        source.close()
        projector.conn.close()


def _skip_to(source: KafkaSource, projector: Projector) -> None:
    stored = projector.offsets()
    for tp in source.tps:
        target = stored.get((tp.topic, tp.partition), 0)
        if source.consumer.position(tp) < target:
            source.consumer.seek(tp, target)


def run_projections_threads(config: ProjectionConfig, stop: threading.Event) -> list[threading.Thread]:
    """Start one live thread per projection (the kafka engine); they end when `stop` is set."""
    threads = []
    for projection in make_projections(config):
        thread = threading.Thread(target=run_live, args=(config, projection, stop),
                                  name=f"projection-{projection.name}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


# -- rebuild -----------------------------------------------------------------------------------------------


Progress = Callable[[int, int], None]


def rebuild(config: ProjectionConfig, name: str, progress: Progress | None = None) -> int:
    """Build `name` from offset 0 beside the live build, then swap it in atomically; returns records read."""
    port = config.search_port()
    live_projection = get_projection(config, name, port)
    shadow_projection = get_projection(config, name, port)
    source = KafkaSource(config.settings, live_projection.topics(config.topic_prefix), config.batch_size)
    live = open_projector(config, live_projection, source)
    shadow = Projector(shadow_projection, config.connect(), topic_prefix=config.topic_prefix,
                       suffix=NEXT_SUFFIX, partitions=source.partitions)
    new_index = _prepare_shadow(shadow, shadow_projection)
    status_key = f"{name}{NEXT_SUFFIX}"
    try:
        set_status(live.conn, status_key, "rebuilding")
        source.seek({})
        ends = source.end_offsets()
        total = sum(ends.values())
        done = 0

        def advance(count: int, _: BatchResult) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, total)

        read = consume_until(shadow, source, ends, config.batch_size, advance)
        read += _swap(config, live, shadow, source, new_index)
        log.info("projection.rebuilt", projection=name, records=read)
        return read
    except BaseException:
        shadow.drop()
        if new_index is not None:
            port.delete_index(new_index)
        raise
    finally:
        with live.conn.transaction():
            live.conn.execute("DELETE FROM projection_status WHERE projection = %s", (status_key,))
        source.close()
        live.conn.close()
        shadow.conn.close()


def _prepare_shadow(shadow: Projector, projection: Projection) -> str | None:
    """Fresh `__next` tables (dropping a crashed rebuild's) and, for search, a new versioned index."""
    ensure_schema(shadow.conn, _current_schema(shadow.conn))
    shadow.drop()
    shadow.setup()
    if not isinstance(projection, SearchProjection):
        return None
    index = next_index_name(projection.port, projection.alias)
    projection.port.create_index(index, MAPPINGS, INDEX_SETTINGS)
    projection.target = index
    return index


def _current_schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    conn.commit()
    return str(row[0]) if row else "public"


def _swap(config: ProjectionConfig, live: Projector, shadow: Projector, source: KafkaSource,
          new_index: str | None) -> int:
    """In one transaction holding the live checkpoint rows: finish the tail, rename tables, move offsets."""
    conn = shadow.conn
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
        # The live consumer locks these rows first in each batch: holding them pauses it until we commit.
        live_offsets = lock_offsets(cur, live.checkpoint_name)
        read = _finish_tail(shadow, source, live_offsets, config.batch_size)
        if new_index is not None:
            assert isinstance(shadow.projection, SearchProjection)
            port = shadow.projection.port
            port.refresh(new_index)
            port.swap_alias(shadow.projection.alias, new_index, drop_old=True)
        for logical in live.projection.tables:
            name, next_name = quote_ident(live.tables[logical]), quote_ident(shadow.tables[logical])
            cur.execute(f"ALTER TABLE IF EXISTS {name} RENAME TO {quote_ident(logical + OLD_SUFFIX)}")
            cur.execute(f"ALTER TABLE {next_name} RENAME TO {name}")
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(logical + OLD_SUFFIX)}")
        cur.execute(
            "INSERT INTO projection_checkpoints (projection, topic, partition, next_offset, last_notification_id,"
            " updated_at) SELECT %s, topic, partition, next_offset, last_notification_id, now()"
            " FROM projection_checkpoints WHERE projection = %s"
            " ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
            " last_notification_id = EXCLUDED.last_notification_id, updated_at = now()",
            (live.checkpoint_name, shadow.checkpoint_name),
        )
        cur.execute("DELETE FROM projection_checkpoints WHERE projection = %s", (shadow.checkpoint_name,))
    return read


def _finish_tail(shadow: Projector, source: KafkaSource, live_offsets: Mapping[tuple[str, int], int],
                 batch_size: int) -> int:
    """Apply what the live build applied since the rebuild's last read, so the swap loses nothing."""
    positions = read_offsets(shadow.conn, shadow.checkpoint_name)
    read = 0
    while not caught_up_to(positions, live_offsets):
        records = source.poll(batch_size)
        if records:
            shadow.apply_batch(records)
            read += len(records)
            positions = read_offsets(shadow.conn, shadow.checkpoint_name)
    return read


# -- status ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectionStatus:
    """Where a projection is: offsets, last notification id, lag in events and seconds, state."""

    name: str
    state: str
    offsets: dict[str, int]
    last_notification_id: int
    lag_events: int
    lag_seconds: float


def status(config: ProjectionConfig) -> list[ProjectionStatus]:
    """The status of every projection (lag against the topics' end offsets now)."""
    conn = config.connect()
    ensure_schema(conn, config.schema)
    consumer = make_consumer(config.settings, group_id=None)
    try:
        return [_status_of(conn, consumer, config, name) for name in (config.names or projection_names())]
    finally:
        consumer.close()
        conn.close()


def _status_of(conn: psycopg.Connection[Any], consumer: KafkaConsumer, config: ProjectionConfig,
               name: str) -> ProjectionStatus:
    tps = [TopicPartition(t, p) for t in get_projection_topics(name, config.topic_prefix)
           for p in range(partition_count(consumer, t))]
    ends = {(tp.topic, tp.partition): int(o) for tp, o in consumer.end_offsets(tps).items()}
    with conn.transaction():
        rows = conn.execute(
            "SELECT topic, partition, next_offset, last_notification_id, updated_at FROM projection_checkpoints"
            " WHERE projection = %s", (name,)).fetchall()
        states = dict(conn.execute(
            "SELECT projection, state FROM projection_status WHERE projection IN (%s, %s)"
            " AND heartbeat_at > now() - make_interval(secs => %s)",
            (name, f"{name}{NEXT_SUFFIX}", LIVE_WITHIN_S)).fetchall())
    offsets = {(t, p): o for t, p, o, _, _ in rows}
    lagging = {tp: offsets.get(tp, 0) for tp, end in ends.items() if end > offsets.get(tp, 0)}
    lag = sum(ends[tp] - offset for tp, offset in lagging.items())
    oldest = _oldest_unapplied_ms(consumer, lagging)
    lag_s = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
    state = "rebuilding" if f"{name}{NEXT_SUFFIX}" in states else states.get(name, "stopped")
    return ProjectionStatus(
        name=name, state=state, offsets={f"{t}[{p}]": o for (t, p), o in sorted(offsets.items())},
        last_notification_id=max((r[3] for r in rows), default=0), lag_events=lag, lag_seconds=round(lag_s, 3),
    )


def _oldest_unapplied_ms(consumer: KafkaConsumer, lagging: dict[tuple[str, int], int]) -> float | None:
    """Timestamp (ms) of the oldest message not yet applied: the first one at each lagging offset."""
    stamps: list[float] = []
    for (topic, partition), offset in lagging.items():
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        for records in consumer.poll(timeout_ms=2000, max_records=1).values():
            stamps.extend(record.timestamp for record in records[:1])
    return min(stamps) if stamps else None


@contextmanager
def stop_on_exit(stop: threading.Event) -> Iterator[threading.Event]:
    try:
        yield stop
    finally:
        stop.set()
