"""Bounded consumption: apply everything on a projection's topics up to given end offsets, then stop."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from projections import checkpoints
from projections.config import ProjectionConfig
from projections.core import Projection
from projections.dead_letters import DeadLetterSink
from projections.engine import BatchResult, Projector
from projections.read_models.search import SearchProjection, ensure_alias
from projections.registry import make_projections
from projections.source import KafkaSource, TopicPart

OnBatch = Callable[[int, BatchResult], None]


def open_projector(config: ProjectionConfig, projection: Projection, partitions: Mapping[str, int],
                   suffix: str = "") -> Projector:
    """A projector with its own connection, tables and checkpoint rows ready (live build unless `suffix`)."""
    conn = config.connect()
    checkpoints.ensure_schema(conn, config.schema)
    if isinstance(projection, SearchProjection) and not suffix:
        ensure_alias(projection.port, projection.alias)
    projector = Projector(projection, conn, suffix=suffix, partitions=partitions)
    projector.setup()
    return projector


def caught_up_to(positions: Mapping[TopicPart, int], ends: Mapping[TopicPart, int]) -> bool:
    return all(positions.get(tp, 0) >= end for tp, end in ends.items())


def consume_until(projector: Projector, source: KafkaSource, ends: Mapping[TopicPart, int], batch_size: int,
                  on_batch: OnBatch | None = None) -> int:
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
            projector = open_projector(config, projection, source.partitions)
            projector.on_dead = sink
            try:
                source.seek(projector.offsets())
                counts[projection.name] = consume_until(projector, source, source.end_offsets(), config.batch_size)
            finally:
                source.close()
                projector.conn.close()
    finally:
        sink.close()
    return counts
