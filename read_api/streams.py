"""What the activity and trends routes use: the activity producer, Redis (sync and async), the key layout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, Request
from kafka import KafkaProducer

from infra.adapters.kafka import make_producer
from infra.adapters.redis import make_redis
from infra.settings import Settings
from schemas import names
from schemas.activity import TrendKeys

ACTIVITY_STATS_KEY = "activity:stats"


@dataclass
class StreamsContext:
    """Built once per app (read_api.app.create_app); tests pass their own prefixes."""

    producer: KafkaProducer
    redis: Any  # redis.Redis; its stubs type replies as `Awaitable | value`
    aredis: Any  # redis.asyncio.Redis
    activity_topic: str
    trend_keys: TrendKeys
    produce_timeout_s: float = 10.0
    sse_keepalive_s: float = 15.0

    @property
    def stats_key(self) -> str:
        return f"{self.trend_keys.prefix}{ACTIVITY_STATS_KEY}"


@dataclass(frozen=True)
class StreamsOptions:
    """Where the activity goes and the trends are read: tests isolate theirs with prefixes."""

    topic_prefix: str = names.TOPIC_PREFIX
    redis_prefix: str = ""


@asynccontextmanager
async def open_streams(settings: Settings, options: StreamsOptions | None = None) -> AsyncIterator[StreamsContext]:
    """Clients for the activity and trends routes, closed when the app stops."""
    options = options or StreamsOptions()
    producer = make_producer(settings, client_id="bazaar-read-api-activity")
    sync_redis = make_redis(settings)
    async_redis = aioredis.Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db,
                                 decode_responses=True, socket_connect_timeout=5.0)
    try:
        yield StreamsContext(producer, sync_redis, async_redis, names.topic(names.ACTIVITY_TOPIC, options.topic_prefix),
                             TrendKeys(options.redis_prefix))
    finally:
        producer.close(timeout=10)
        sync_redis.close()
        await async_redis.aclose()


def get_streams(request: Request) -> StreamsContext:
    streams: StreamsContext = request.app.state.streams
    return streams


Streams = Annotated[StreamsContext, Depends(get_streams)]
