"""The trend job: bazaar.activity -> event-time windows -> bazaar.trends and the Redis rankings.

One process reads every partition of the activity topic (assigned, no consumer group: the offsets that
count are the ones in Redis, committed with the window state). Each poll is one step:

  decode -> count in panes or drop as late (windows.WindowEngine) -> close windows the watermark passed ->
  publish them to bazaar.trends (acks=all, flushed) -> one MULTI/EXEC: state + offsets + rankings + update.

A crash between the publish and the commit publishes those windows again on restart, identically (same key,
same revision): Kafka consumers keep one per identity. Redis sees each batch exactly once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka import TopicPartition
from pydantic import ValidationError

from infra.adapters.kafka import make_consumer, make_producer
from infra.adapters.redis import make_redis
from infra.settings import Settings
from schemas import names
from schemas.activity import ActivityBatch, TrendKeys
from stream_jobs.state import Fenced, JobKeys, RankingTtl, TrendStore
from stream_jobs.windows import BatchResult, Record, WindowEngine

log = structlog.get_logger(__name__)
TREND_JOB = "trends"
END_OFFSETS_EVERY_S = 0.5


@dataclass(frozen=True)
class TrendJobConfig:
    """What one trend job reads and writes; tests isolate themselves with the prefixes."""

    name: str = TREND_JOB
    topic_prefix: str = names.TOPIC_PREFIX
    redis_prefix: str = ""
    allowed_lateness_ms: int = 60_000
    idle_partition_s: float = 5.0
    max_poll_records: int = 5000
    poll_timeout_ms: int = 100
    ranking_ttl: RankingTtl = field(default_factory=lambda: RankingTtl(3600, 3 * 3600))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrendJobConfig:
        values: dict[str, Any] = {
            "allowed_lateness_ms": settings.trends_allowed_lateness_s * 1000,
            "idle_partition_s": settings.trends_idle_partition_s,
            "max_poll_records": settings.trends_max_poll_records,
            "ranking_ttl": RankingTtl(settings.trends_ranking_ttl_5m_s, settings.trends_ranking_ttl_1h_s),
        }
        return cls(**{**values, **overrides})

    @property
    def activity_topic(self) -> str:
        return names.topic(names.ACTIVITY_TOPIC, self.topic_prefix)

    @property
    def trends_topic(self) -> str:
        return names.topic(names.TRENDS_TOPIC, self.topic_prefix)

    @property
    def job_keys(self) -> JobKeys:
        return JobKeys(self.redis_prefix, self.name)

    @property
    def trend_keys(self) -> TrendKeys:
        return TrendKeys(self.redis_prefix)


class TrendJob:
    """Runs the steps until stopped; `step()` alone is one poll and one commit."""

    def __init__(self, settings: Settings, config: TrendJobConfig) -> None:
        self.config = config
        self.redis = make_redis(settings)
        self.store = TrendStore(self.redis, config.job_keys, config.trend_keys, config.ranking_ttl)
        self.store.claim()
        self.engine = WindowEngine(self.store.load(), config.allowed_lateness_ms)
        self.producer = make_producer(settings, client_id=f"bazaar-job-{config.name}")
        self.consumer = make_consumer(settings, group_id=None, client_id=f"bazaar-job-{config.name}",
                                      max_poll_records=config.max_poll_records)
        self.partitions = self._assign()
        started = time.monotonic()
        self._last_record = {p: started for p in self.partitions}
        self._caught_up: set[int] = set()
        self._end_offsets_at = 0.0

    def _assign(self) -> list[int]:
        topic = self.config.activity_topic
        found = self.consumer.partitions_for_topic(topic)
        if not found:
            raise RuntimeError(f"topic {topic} does not exist: run `bazaar up` (it creates the catalogue)")
        partitions = sorted(found)
        assigned = [TopicPartition(topic, p) for p in partitions]
        self.consumer.assign(assigned)
        for tp in assigned:
            self.consumer.seek(tp, self.engine.state.offsets.get(tp.partition, 0))
        log.info("trends.job.assigned", topic=topic, offsets=self.engine.state.offsets)
        return partitions

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set (SIGTERM); every step is committed, so stopping loses nothing."""
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def step(self) -> BatchResult:
        """Poll once, count, close what the watermark passed, publish, commit atomically."""
        polled = self.consumer.poll(timeout_ms=self.config.poll_timeout_ms,
                                    max_records=self.config.max_poll_records)
        result = BatchResult()
        now = time.monotonic()
        records: list[Record] = []
        for tp, messages in sorted(polled.items(), key=lambda item: item[0].partition):
            self._last_record[tp.partition] = now
            for message in messages:
                batch = _decode(message.value)
                if batch is None:
                    result.undecodable += 1
                    result.offsets[tp.partition] = message.offset + 1
                    self.engine.state.offsets[tp.partition] = message.offset + 1
                    continue
                records.extend(Record(tp.partition, message.offset, event) for event in batch.events)
        self.engine.ingest(records, result)
        self.engine.close(self.engine.watermark(self.partitions, self._idle(now)), result)
        if result.closed:
            self._publish(result)
        if result.offsets or result.closed_upto is not None:
            self.store.commit(result, self.engine.state.panes, now_ms=int(time.time() * 1000))
        return result

    def _idle(self, now: float) -> set[int]:
        """Partitions read to their end and quiet for `idle_partition_s`: they do not hold the watermark."""
        if now - self._end_offsets_at >= END_OFFSETS_EVERY_S:
            self._end_offsets_at = now
            topic = self.config.activity_topic
            ends = self.consumer.end_offsets([TopicPartition(topic, p) for p in self.partitions])
            self._caught_up = {tp.partition for tp, end in ends.items() if self.consumer.position(tp) >= end}
        return {p for p in self._caught_up if now - self._last_record[p] >= self.config.idle_partition_s}

    def _publish(self, result: BatchResult) -> None:
        for window in result.closed:
            self.producer.send(
                self.config.trends_topic, key=window.identity.encode(), value=window.model_dump_json().encode(),
                headers=[("job", self.config.name.encode()), ("schema_name", window.schema_name.encode()),
                         ("schema_version", str(window.schema_version).encode()),
                         ("revision", str(window.revision).encode())],
            )
        self.producer.flush()  # acks=all: the windows are durable before the commit says they were closed

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()
        self.redis.close()


def _decode(value: bytes | None) -> ActivityBatch | None:
    if value is None:
        return None
    try:
        return ActivityBatch.model_validate_json(value)
    except ValidationError:
        log.warning("trends.job.undecodable", value=value[:200])
        return None


def run_trend_job(settings: Settings, config: TrendJobConfig | None = None) -> None:
    """The platform process: run until SIGTERM or SIGINT."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    job = TrendJob(settings, config or TrendJobConfig.from_settings(settings))
    try:
        job.run(stop)
    except Fenced as error:
        log.error("trends.job.fenced", error=str(error))
        raise
