"""Per-IP throttling on Redis (`limits`) and Prometheus request metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from prometheus_client import CollectorRegistry, Counter, Histogram

from infra.settings import Settings
from schemas.errors import error_body

log = structlog.get_logger(__name__)

# Probes and scrapes are never throttled.
UNTHROTTLED = frozenset({"/health", "/metrics"})
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
Next = Callable[[Request], Awaitable[Response]]


class RequestMetrics:
    """Request counts and latencies by route template (not raw path: ids would explode the series)."""

    def __init__(self) -> None:
        # One registry per app, so several apps in one process (tests) do not collide.
        self.registry = CollectorRegistry()
        self.requests = Counter("bazaar_read_requests", "Read API requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("bazaar_read_request_seconds", "Read API latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)


class IpRateLimiter:
    """A fixed window per client IP, counted in Redis so every read API process shares it."""

    def __init__(self, settings: Settings, limit: str, prefix: str) -> None:
        uri = f"async+redis://{settings.redis_host}:{settings.redis_port}/{settings.redis_db}"
        self.item: RateLimitItem = parse(limit)
        self._strategy = FixedWindowRateLimiter(RedisStorage(uri, implementation="redispy", key_prefix=prefix))

    async def hit(self, client: str) -> tuple[bool, int]:
        """(allowed, seconds until the window resets); a Redis outage lets the request through."""
        try:
            if await self._strategy.hit(self.item, client):
                return True, 0
            stats = await self._strategy.get_window_stats(self.item, client)
        except Exception as exc:  # noqa: BLE001 - throttling is a guard, not a reason to refuse reads
            log.warning("read.rate_limit.unavailable", error=str(exc))
            return True, 0
        return False, max(1, math.ceil(stats.reset_time - time.time()))


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def install_middleware(app: FastAPI, metrics: RequestMetrics) -> None:
    """Throttle (app.state.limiter, set at startup; None means off), then time and count every request."""

    @app.middleware("http")
    async def observe(request: Request, call_next: Next) -> Response:
        started = time.perf_counter()
        limiter: IpRateLimiter | None = getattr(request.app.state, "limiter", None)
        response: Response | None = None
        if limiter is not None and request.url.path not in UNTHROTTLED:
            allowed, retry_after = await limiter.hit(request.client.host if request.client else "unknown")
            if not allowed:
                body = error_body("rate.limited", f"more than {limiter.item} from this address; retry later",
                                  {"retry_after_s": retry_after})
                response = JSONResponse(body, status_code=429, headers={"Retry-After": str(retry_after)})
        if response is None:
            response = await call_next(request)
        metrics.observe(request.method, _route_of(request), response.status_code, time.perf_counter() - started)
        return response
