"""Reading domain topics with kafka-python for bounded jobs (catch-up, rebuild from offset 0, status).

Consumers use manual `assign` + `seek` to the offsets stored in `projection_checkpoints` (no consumer group):
PostgreSQL, not Kafka, knows what a projection has applied. Live consumption is Faust's (projections/app.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from infra.adapters.kafka import make_consumer
from infra.settings import Settings
from projections.config import BATCH_SIZE
from projections.core import Record

POLL_TIMEOUT_MS = 100
TopicPart = tuple[str, int]


def to_record(message: Any, *, timestamp_ms: float) -> Record:
    """The one conversion of a consumed message (kafka-python's or Faust's) to a Record.

    The clients disagree on the timestamp's unit (kafka-python: ms, Faust: s), so the caller passes it in ms.
    """
    raw = message.headers or ()
    items = raw.items() if isinstance(raw, Mapping) else raw
    headers = tuple((str(k), bytes(v) if v is not None else b"") for k, v in items)
    return Record(message.topic, message.partition, message.offset, message.key, message.value or b"",
                  headers, int(timestamp_ms))


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

    def seek(self, offsets: Mapping[TopicPart, int]) -> None:
        for tp in self.tps:
            self.consumer.seek(tp, offsets.get((tp.topic, tp.partition), 0))

    def poll(self, max_records: int, timeout_ms: int = POLL_TIMEOUT_MS) -> list[Record]:
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [to_record(message, timestamp_ms=message.timestamp or 0)
                for messages in batches.values() for message in messages]

    def end_offsets(self) -> dict[TopicPart, int]:
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


def topic_partitions(settings: Settings, topics: Sequence[str]) -> dict[str, int]:
    """Partition counts of topics, through a short-lived consumer."""
    consumer = make_consumer(settings, group_id=None)
    try:
        return {topic: partition_count(consumer, topic) for topic in topics}
    finally:
        consumer.close()
