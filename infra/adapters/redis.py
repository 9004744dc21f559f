"""The Redis client, built from Settings."""

from __future__ import annotations

from typing import Any

import redis

from infra.settings import Settings


def make_redis(settings: Settings, **kw: Any) -> redis.Redis:
    """A pooled client that decodes replies to str; keyword arguments override redis.Redis's options."""
    options: dict[str, Any] = {
        "host": settings.redis_host,
        "port": settings.redis_port,
        "db": settings.redis_db,
        "decode_responses": True,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 5.0,
        # PING a connection idle for 30 s before reusing it, so a restarted server costs no failed command.
        "health_check_interval": 30,
        **kw,
    }
    return redis.Redis(**options)
