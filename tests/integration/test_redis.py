"""Against the real local Redis (started by `./run up`): a sorted-set round trip and persistence settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import cast

import pytest
import redis

from infra.adapters.redis import make_redis
from infra.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    """A client of the running server; fails (not skips) when Redis is down, since these tests need it."""
    settings = Settings()
    client = make_redis(settings)
    error = _ping_error(client)
    if error:
        client.close()
        pytest.fail(
            f"Redis is not answering on {settings.redis_host}:{settings.redis_port}: "
            f"start the local services with `./run up` ({error})",
            pytrace=False,
        )
    yield client
    client.close()


def _ping_error(client: redis.Redis) -> str | None:
    try:
        client.ping()
    except redis.ConnectionError as exc:
        return str(exc)
    return None


def test_sorted_set_round_trip(client: redis.Redis) -> None:
    key = f"bazaar:test:trending:{uuid.uuid4().hex}"
    try:
        assert client.zadd(key, {"lamp": 3, "chair": 5, "desk": 1}) == 3
        assert client.zrevrange(key, 0, -1, withscores=True) == [("chair", 5.0), ("lamp", 3.0), ("desk", 1.0)]
        assert client.zincrby(key, 4.5, "desk") == 5.5
        assert client.zrevrange(key, 0, 1, withscores=True) == [("desk", 5.5), ("chair", 5.0)]
    finally:
        client.delete(key)
    assert client.exists(key) == 0


def test_persistence_is_on(client: redis.Redis) -> None:
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    save = cast(dict[str, str], client.config_get("save"))
    assert save["save"] != ""  # RDB snapshot points are set as well
