"""Read-your-writes (docs/READ_MODELS.md): has a projection applied every event with notification id <= P?

True when the relay has published P (`bazaar_relay_positions`) and, for each partition of the projection's
topics, the partition is fully consumed (`next_offset` >= its Kafka end offset, read AFTER the relay was
seen at P) or its `last_notification_id` >= P (a partition is in notification order).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition

from infra.adapters.kafka import bootstrap_servers
from infra.settings import Settings, get_settings
from projections.runner import get_projection_topics
from schemas.messages import TOPIC_PREFIX

TopicPart = tuple[str, int]
EndOffsets = Callable[[list[str]], Mapping[TopicPart, int]]
RELAY_TABLE = "bazaar_relay_positions"


def relay_position(conn: psycopg.Connection[Any], relay_name: str = "main") -> int:
    """The notification id the relay has published up to (0 before it ever ran)."""
    try:
        row = conn.execute(f"SELECT notification_id FROM {RELAY_TABLE} WHERE name = %s", (relay_name,)).fetchone()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return 0
    return int(row[0]) if row else 0


def caught_up(
    conn: psycopg.Connection[Any],
    projection: str,
    position: int,
    *,
    end_offsets: EndOffsets | None = None,
    topic_prefix: str = TOPIC_PREFIX,
    relay: int | None = None,
) -> bool:
    """The contract's rule; `end_offsets` defaults to a shared Kafka client, `relay` to the stored position."""
    published = relay_position(conn) if relay is None else relay
    if published < position:
        return False
    topics = get_projection_topics(projection, topic_prefix)
    ends = (end_offsets or kafka_end_offsets())(topics)  # read after the relay check, so they contain P
    rows = conn.execute(
        "SELECT topic, partition, next_offset, last_notification_id FROM projection_checkpoints"
        " WHERE projection = %s", (projection,)).fetchall()
    stored = {(t, p): (offset, nid) for t, p, offset, nid in rows}
    for part, end in ends.items():
        next_offset, last_id = stored.get(part, (0, 0))
        if next_offset < end and last_id < position:
            return False
    return True


class KafkaEnds:
    """End offsets from the cluster through one group-less consumer (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers(settings), group_id=None,
                                       isolation_level="read_committed", enable_auto_commit=False)
        self._lock = threading.Lock()

    def __call__(self, topics: list[str]) -> Mapping[TopicPart, int]:
        with self._lock:
            parts = [TopicPartition(t, p) for t in topics for p in self._consumer.partitions_for_topic(t) or ()]
            return {(tp.topic, tp.partition): int(o) for tp, o in self._consumer.end_offsets(parts).items()}


_shared: KafkaEnds | None = None


def kafka_end_offsets() -> KafkaEnds:
    global _shared
    if _shared is None:
        _shared = KafkaEnds(get_settings())
    return _shared
