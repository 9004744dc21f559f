"""The live projections as one Faust app: an agent per projection reading its domain topics in batches.

Each batch goes through the same `Projector.apply_batch` as catch-up and rebuild (projections/engine.py).

PostgreSQL checkpoints are the truth, not Faust's consumer-group offsets: on every assignment the consumer
seeks each partition to the lowest next offset any projection stored for it, and each projector skips the
records it already applied. The group id is unique per worker start, so a restart never waits for a dead
member's session to expire, and Faust's own offset commits are never read back.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import faust
import structlog
from faust.types import TP

from infra.adapters.kafka import bootstrap_servers
from projections.catch_up import open_projector
from projections.checkpoints import set_status
from projections.config import ProjectionConfig
from projections.core import Projection, Record
from projections.dead_letters import DeadLetterSink
from projections.engine import Projector
from projections.registry import make_projections
from projections.source import to_record, topic_partitions

log = structlog.get_logger(__name__)

BATCH_WITHIN_S = 0.05
HEARTBEAT_S = 5.0


class LiveProjection:
    """One projection's projector and dead-letter sink, used from the agent's worker thread only."""

    def __init__(self, config: ProjectionConfig, projection: Projection) -> None:
        self.config = config
        self.projection = projection
        self.topics = projection.topics(config.topic_prefix)
        partitions = topic_partitions(config.settings, self.topics)
        self.projector: Projector = open_projector(config, projection, partitions)
        self.sink = DeadLetterSink(config.settings, config.dlq_topic)
        self.projector.on_dead = self.sink
        # Agent batches, heartbeats and seeks run in worker threads and share the one connection.
        self._lock = threading.Lock()
        set_status(self.projector.conn, projection.name, "live")

    def offsets(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return self.projector.offsets()

    def apply(self, records: Sequence[Record]) -> None:
        with self._lock:
            self.projector.apply_batch(records)

    def heartbeat(self, state: str = "live") -> None:
        with self._lock:
            set_status(self.projector.conn, self.projection.name, state)

    def close(self) -> None:
        self.heartbeat("stopped")
        self.sink.close()
        self.projector.conn.close()


def build_app(config: ProjectionConfig) -> tuple[faust.App, list[LiveProjection]]:
    """The Faust app with one agent per projection (projectors are opened here, before the worker starts)."""
    app = faust.App(
        f"bazaar-projections-{uuid.uuid4().hex[:12]}",
        broker=[f"kafka://{server}" for server in bootstrap_servers(config.settings)],
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        store="memory://",
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1_000_000,
        stream_buffer_maxsize=max(4096, config.batch_size * 4),
        datadir=str(config.settings.run_dir / "faust"),
    )
    lives = [LiveProjection(config, projection) for projection in make_projections(config)]
    for live in lives:
        _add_agent(app, live, config.batch_size)
    _seek_on_assignment(app, lives)
    _heartbeats(app, lives)
    return app, lives


def _add_agent(app: faust.App, live: LiveProjection, batch_size: int) -> None:
    channel = app.topic(*live.topics, value_type=bytes, key_type=bytes, value_serializer="raw",
                        key_serializer="raw")

    async def project(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(batch_size, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
            # Faust's timestamps are seconds; Records keep milliseconds.
            records = [to_record(event.message, timestamp_ms=(event.message.timestamp or 0) * 1000)
                       for event in events]
            # psycopg is synchronous: the batch runs in a thread so other agents keep consuming.
            await asyncio.to_thread(live.apply, records)

    app.agent(channel, name=f"projection-{live.projection.name}")(project)


def _seek_on_assignment(app: faust.App, lives: Sequence[LiveProjection]) -> None:
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def seek_to_checkpoints(sender: Any, assigned: set[TP], **_: Any) -> None:
        stored = await asyncio.gather(*(asyncio.to_thread(live.offsets) for live in lives))
        for tp in assigned:
            offsets = [
                offsets.get((tp.topic, tp.partition), 0)
                for live, offsets in zip(lives, stored, strict=True) if tp.topic in live.topics
            ]
            if offsets:
                await app.consumer.seek(tp, min(offsets))
        log.info("projections.seeked", partitions=len(assigned))


def _heartbeats(app: faust.App, lives: Sequence[LiveProjection]) -> None:
    @app.timer(HEARTBEAT_S)  # type: ignore[untyped-decorator]
    async def beat() -> None:
        for live in lives:
            await asyncio.to_thread(live.heartbeat)


def run_worker(config: ProjectionConfig) -> None:
    """Run the Faust worker until SIGTERM/SIGINT (Faust installs the handlers and stops cleanly)."""
    app, lives = build_app(config)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        for live in lives:
            live.close()
