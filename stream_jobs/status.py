"""`bazaar jobs status`: per stream job, input lag, windows closed, late events dropped, last output time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition

from infra.adapters.kafka import make_consumer
from infra.adapters.redis import make_redis
from infra.settings import Settings
from stream_jobs.trend_job import TrendJobConfig


@dataclass(frozen=True)
class JobStatus:
    """One row of `bazaar jobs status`."""

    name: str
    input_topic: str
    input_lag: int | None
    """Records in the input topic after the job's committed offsets; None when the broker did not answer."""
    events: int
    late_accepted: int
    late_dropped: int
    undecodable: int
    windows_closed: int
    watermark: datetime | None
    last_output: datetime | None


def job_status(settings: Settings, config: TrendJobConfig) -> JobStatus:
    """The trend job's counters (Redis) and its lag against the topic's end offsets (Kafka)."""
    client: Any = make_redis(settings)  # redis-py's stubs type replies as `Awaitable | value`
    try:
        keys = config.job_keys
        meta = client.hgetall(keys.key("meta"))
        offsets = {int(p): int(o) for p, o in client.hgetall(keys.key("offsets")).items()}
    finally:
        client.close()
    closed_upto = meta.get("closed_upto")
    last_output = meta.get("last_output_ms")
    return JobStatus(
        name=config.name, input_topic=config.activity_topic, input_lag=_lag(settings, config, offsets),
        events=int(meta.get("events", 0)), late_accepted=int(meta.get("late_accepted", 0)),
        late_dropped=int(meta.get("late_dropped", 0)), undecodable=int(meta.get("undecodable", 0)),
        windows_closed=int(meta.get("windows_closed", 0)),
        watermark=_moment(closed_upto), last_output=_moment(last_output),
    )


def _lag(settings: Settings, config: TrendJobConfig, offsets: dict[int, int]) -> int | None:
    try:
        consumer = make_consumer(settings, group_id=None, client_id="bazaar-jobs-status", request_timeout_ms=5000)
    except Exception:  # no broker: the status still shows what Redis knows
        return None
    try:
        partitions = consumer.partitions_for_topic(config.activity_topic) or set()
        ends = consumer.end_offsets([TopicPartition(config.activity_topic, p) for p in partitions])
        return int(sum(max(end - offsets.get(tp.partition, 0), 0) for tp, end in ends.items()))
    finally:
        consumer.close()


def _moment(ms: str | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, UTC)
