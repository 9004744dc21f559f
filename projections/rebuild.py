"""Rebuild-and-swap: build a projection from offset 0 beside the live one, then swap it in atomically.

Reads never see an empty or half-built model: the new build writes `<table>__next` (and, for search, a new
versioned index); the swap transaction holds the live checkpoint rows, applies the tail the live build has
applied since, renames the tables, swaps the alias and moves the checkpoints and dead letters over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from projections import checkpoints
from projections.catch_up import caught_up_to, consume_until, open_projector
from projections.config import ProjectionConfig
from projections.core import NEXT_SUFFIX, OLD_SUFFIX, quote_ident, schema_of
from projections.engine import BatchResult, Projector
from projections.read_models.search import INDEX_SETTINGS, MAPPINGS, SearchProjection, next_index_name
from projections.registry import make_projection, projection_class
from projections.source import KafkaSource, TopicPart

log = structlog.get_logger(__name__)

SWAP_LOCK_TIMEOUT = "10s"
Progress = Callable[[int, int], None]


def rebuild(config: ProjectionConfig, name: str, progress: Progress | None = None) -> int:
    """Build `name` from offset 0 beside the live build, then swap it in; returns records read."""
    port = config.search_port()
    cls = projection_class(name)
    live_projection, shadow_projection = make_projection(config, cls, port), make_projection(config, cls, port)
    source = KafkaSource(config.settings, cls.topics(config.topic_prefix), config.batch_size)
    live = open_projector(config, live_projection, source.partitions)
    shadow = Projector(shadow_projection, config.connect(), suffix=NEXT_SUFFIX, partitions=source.partitions)
    new_index = _prepare_shadow(shadow)
    status_key = f"{name}{NEXT_SUFFIX}"
    try:
        checkpoints.set_status(live.conn, status_key, "rebuilding")
        source.seek({})
        ends = source.end_offsets()
        read = consume_until(shadow, source, ends, config.batch_size, _reporter(progress, sum(ends.values())))
        read += _swap(config, live, shadow, source, new_index)
        log.info("projection.rebuilt", projection=name, records=read)
        return read
    except BaseException:
        shadow.drop()
        if new_index is not None:
            port.delete_index(new_index)
        raise
    finally:
        checkpoints.clear_status(live.conn, status_key)
        source.close()
        live.conn.close()
        shadow.conn.close()


def _reporter(progress: Progress | None, total: int) -> Callable[[int, BatchResult], None]:
    done = 0

    def advance(count: int, _: BatchResult) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    return advance


def _prepare_shadow(shadow: Projector) -> str | None:
    """Fresh `__next` tables (dropping a crashed rebuild's) and, for search, a new versioned index."""
    with shadow.conn.cursor() as cur:
        schema = schema_of(cur)
    shadow.conn.commit()
    checkpoints.ensure_schema(shadow.conn, schema)
    shadow.drop()
    shadow.setup()
    projection = shadow.projection
    if not isinstance(projection, SearchProjection):
        return None
    index = next_index_name(projection.port, projection.alias)
    projection.port.create_index(index, MAPPINGS, INDEX_SETTINGS)
    projection.target = index
    return index


def _swap(config: ProjectionConfig, live: Projector, shadow: Projector, source: KafkaSource,
          new_index: str | None) -> int:
    """In one transaction holding the live checkpoint rows: finish the tail, rename tables, move offsets."""
    conn = shadow.conn
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
        # The live consumer locks these rows first in each batch: holding them pauses it until we commit.
        live_offsets = checkpoints.lock_offsets(cur, live.checkpoint_name)
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
        checkpoints.move_build(cur, shadow.checkpoint_name, live.checkpoint_name)
    return read


def _finish_tail(shadow: Projector, source: KafkaSource, live_offsets: Mapping[TopicPart, int],
                 batch_size: int) -> int:
    """Apply what the live build applied since the rebuild's last read, so the swap loses nothing."""
    positions = checkpoints.read_offsets(shadow.conn, shadow.checkpoint_name)
    read = 0
    while not caught_up_to(positions, live_offsets):
        records = source.poll(batch_size)
        if records:
            shadow.apply_batch(records)
            read += len(records)
            positions = checkpoints.read_offsets(shadow.conn, shadow.checkpoint_name)
    return read
