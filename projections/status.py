"""`bazaar projections status`: per projection, its offsets, lag in events and seconds, and state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition

from infra.adapters.kafka import make_consumer
from projections import checkpoints
from projections.config import ProjectionConfig
from projections.core import NEXT_SUFFIX
from projections.registry import projection_class, projection_names
from projections.source import TopicPart, partition_count

# A heartbeat older than this means the projection's worker is not running.
LIVE_WITHIN_S = 30.0


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
    checkpoints.ensure_schema(conn, config.schema)
    consumer = make_consumer(config.settings, group_id=None)
    try:
        return [_status_of(conn, consumer, config, name) for name in (config.names or projection_names())]
    finally:
        consumer.close()
        conn.close()


def _status_of(conn: psycopg.Connection[Any], consumer: KafkaConsumer, config: ProjectionConfig,
               name: str) -> ProjectionStatus:
    tps = [TopicPartition(t, p) for t in projection_class(name).topics(config.topic_prefix)
           for p in range(partition_count(consumer, t))]
    ends = {(tp.topic, tp.partition): int(o) for tp, o in consumer.end_offsets(tps).items()}
    with conn.transaction():
        rows = conn.execute(
            f"SELECT topic, partition, next_offset, last_notification_id FROM {checkpoints.CHECKPOINTS}"
            " WHERE projection = %s", (name,)).fetchall()
        states = dict(conn.execute(
            f"SELECT projection, state FROM {checkpoints.STATUS} WHERE projection IN (%s, %s)"
            " AND heartbeat_at > now() - make_interval(secs => %s)",
            (name, f"{name}{NEXT_SUFFIX}", LIVE_WITHIN_S)).fetchall())
    offsets = {(t, p): o for t, p, o, _ in rows}
    lagging = {tp: offsets.get(tp, 0) for tp, end in ends.items() if end > offsets.get(tp, 0)}
    lag = sum(ends[tp] - offset for tp, offset in lagging.items())
    oldest = _oldest_unapplied_ms(consumer, lagging)
    lag_s = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
    state = "rebuilding" if f"{name}{NEXT_SUFFIX}" in states else states.get(name, "stopped")
    return ProjectionStatus(
        name=name, state=state, offsets={f"{t}[{p}]": o for (t, p), o in sorted(offsets.items())},
        last_notification_id=max((r[3] for r in rows), default=0), lag_events=lag, lag_seconds=round(lag_s, 3),
    )


def _oldest_unapplied_ms(consumer: KafkaConsumer, lagging: dict[TopicPart, int]) -> float | None:
    """Timestamp (ms) of the oldest message not yet applied: the first one at each lagging offset."""
    stamps: list[float] = []
    for (topic, partition), offset in lagging.items():
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        for records in consumer.poll(timeout_ms=2000, max_records=1).values():
            stamps.extend(record.timestamp for record in records[:1])
    return min(stamps) if stamps else None
