"""The read API (FastAPI, /v1): queries over the read models; never loads an aggregate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import ConnectionPool

from infra.adapters.postgres import make_pool
from infra.adapters.search import SearchPort
from infra.settings import Settings
from infra.tokens import TokenVerifier
from read_api import activity_routes, trends_routes
from read_api.config import ReadApiConfig
from read_api.consistency import EndOffsetSource, KafkaEndOffsets, LogWatermark, ProjectionTopics, Waiter
from read_api.deps import ReadContext
from read_api.embedding import Embedder, MiniLmEmbedder
from read_api.errors import install_error_handlers
from read_api.middleware import IpRateLimiter, RequestMetrics, install_middleware
from read_api.routes import router
from read_api.search import ListingSearch
from read_api.streams import StreamsOptions, open_streams

DESCRIPTION = (
    "Queries over the read models. Pass a command's `position` as `?after=` to read your own writes "
    "(HTTP 408 `read.not_caught_up` if the projection does not reach it within the wait limit). "
    "Errors are `{\"error\": {\"code\", \"message\", \"details\"}}`."
)


def make_read_pool(settings: Settings, config: ReadApiConfig) -> ConnectionPool:
    """A pool of autocommit connections (each poll of `?after=` sees fresh checkpoints) on the config's schema."""
    kwargs: dict[str, Any] = {"autocommit": True}
    if config.search_path is not None:
        kwargs["options"] = f"-c search_path={config.search_path}"
    return make_pool(settings, kwargs=kwargs, name="bazaar-reads")


def create_app(
    settings: Settings,
    *,
    projection_topics: ProjectionTopics,
    config: ReadApiConfig | None = None,
    pool: ConnectionPool | None = None,
    search_port: SearchPort | None = None,
    embedder: Embedder | None = None,
    end_offsets: EndOffsetSource | None = None,
    streams: StreamsOptions | None = None,
) -> FastAPI:
    """The read API; whatever is not passed is built from settings at startup (and closed at shutdown).

    `?after=` is decided by read_api.consistency over `projection_topics` (each projection's topics, handed
    in by the composition root from the projections' registry) and `end_offsets` (Kafka unless given).
    """
    config = config or ReadApiConfig.from_settings(settings)
    metrics = RequestMetrics()

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            api.state.reads = _context(settings, config, stack, pool, search_port, embedder, end_offsets,
                                       projection_topics)
            api.state.limiter = (
                IpRateLimiter(settings, config.rate_limit, config.rate_limit_prefix) if config.rate_limit else None
            )
            # Activity producer and trends readers (read_api.streams); `streams` sets topic and key prefixes.
            api.state.streams = await stack.enter_async_context(open_streams(settings, streams))
            yield

    api = FastAPI(title="Bazaar read API", version="1", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(api)
    install_middleware(api, metrics)
    api.include_router(router)
    api.include_router(activity_routes.router)
    api.include_router(trends_routes.router)

    @api.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @api.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus metrics: request counts and latencies by route."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return api


def _context(
    settings: Settings,
    config: ReadApiConfig,
    stack: AsyncExitStack,
    pool: ConnectionPool | None,
    search_port: SearchPort | None,
    embedder: Embedder | None,
    end_offsets: EndOffsetSource | None,
    projection_topics: ProjectionTopics,
) -> ReadContext:
    """Build what was not given; register what we built for closing."""
    if pool is None:
        pool = make_read_pool(settings, config)
        stack.callback(pool.close)
    if end_offsets is None:
        kafka = KafkaEndOffsets(settings)
        stack.callback(kafka.close)
        end_offsets = kafka
    rule = LogWatermark(end_offsets, projection_topics, ttl_s=config.end_offsets_ttl_s)
    search = ListingSearch(
        port=search_port or SearchPort.from_settings(settings),
        alias=config.search_alias,
        embedder=embedder or MiniLmEmbedder(),
        candidates=config.semantic_candidates,
    )
    return ReadContext(
        config=config,
        pool=pool,
        search=search,
        tokens=TokenVerifier.from_settings(settings),
        waiter=Waiter(rule, config.after_timeout_s, config.after_poll_s),
    )
