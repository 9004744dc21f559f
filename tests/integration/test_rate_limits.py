"""The read API's throttle as `bazaar serve-reads` runs it, on a Redis of its own that the tests stop.

One limit per client address (each test's clients connect from their own loopback addresses, 127.0.0.x),
a forwarded-for header buys no fresh limit, and with Redis down reads are served unthrottled until it
answers again (docs/DECISIONS.md, "Read API"). The shared Redis is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra.services.redis import RedisService
from infra.settings import REPO_ROOT, Settings
from tests.support import free_port, require_services, wait_http

pytestmark = pytest.mark.integration

LIMIT, WINDOW_S = 3, 60


@dataclass
class Served:
    """A read API process throttled on the private Redis."""

    url: str
    redis: RedisService
    log_path: Path

    def client(self, address: str) -> httpx.Client:
        """A client whose connections come from `address`."""
        return httpx.Client(base_url=self.url, timeout=10, transport=httpx.HTTPTransport(local_address=address))

    def log_events(self) -> list[str]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line)["event"])
            except (ValueError, KeyError, TypeError):
                continue
        return events


@pytest.fixture(scope="module")
def served(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_services(settings, "postgres", "kafka", "opensearch")
    home = tmp_path_factory.mktemp("redis-home")
    redis = RedisService(Settings(home=home, redis_port=free_port()))
    redis.start()
    port = free_port()
    log_path = home / "read-api.log"
    env = {**os.environ, "BAZAAR_REDIS_PORT": str(redis.settings.redis_port),
           "BAZAAR_READ_RATE_LIMIT": str(LIMIT), "BAZAAR_READ_RATE_LIMIT_WINDOW_S": str(WINDOW_S),
           "PYTHONPATH": str(REPO_ROOT)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("bazaar")), "serve-reads", "--port", str(port)],
                                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield Served(f"http://127.0.0.1:{port}", redis, log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        redis.stop()


def statuses(client: httpx.Client, count: int, headers: dict[str, str] | None = None) -> list[int]:
    """Statuses of `count` reads of an unknown user's trust (404 when served, 429 when throttled)."""
    return [client.get(f"/v1/users/{uuid.uuid4()}/trust", headers=headers).status_code for _ in range(count)]


def test_each_client_address_has_a_limit_of_its_own(served: Served) -> None:
    with served.client("127.0.0.2") as first, served.client("127.0.0.3") as second:
        assert statuses(first, LIMIT + 1) == [404] * LIMIT + [429]
        assert statuses(second, LIMIT + 1) == [404] * LIMIT + [429]  # the first one's use counted not here
        refused = first.get(f"/v1/users/{uuid.uuid4()}/trust")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate.limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_S
        assert first.get("/health").status_code == 200  # probes are never throttled


def test_a_forwarded_for_header_buys_no_fresh_limit(served: Served) -> None:
    # From 127.0.0.1, the address uvicorn trusts forwarded headers from unless told not to.
    with served.client("127.0.0.1") as local:
        spoofed = [statuses(local, 1, {"X-Forwarded-For": f"10.0.0.{n}"})[0] for n in range(LIMIT + 1)]
    assert spoofed == [404] * LIMIT + [429]


def test_with_redis_down_reads_are_served_unthrottled_and_the_limit_returns_with_redis(served: Served) -> None:
    with served.client("127.0.0.4") as limited:
        assert statuses(limited, LIMIT + 1) == [404] * LIMIT + [429]
        served.redis.stop()
        try:
            started = time.monotonic()
            during = statuses(limited, 2 * LIMIT)
            took = time.monotonic() - started
        finally:
            served.redis.start()
    assert during == [404] * (2 * LIMIT)  # served, neither refused nor failed
    assert took < 2 * LIMIT * 1.0, f"reads took {took:.1f} s with Redis down"
    assert served.log_events().count("read.rate_limit.unavailable") >= 2 * LIMIT
    with served.client("127.0.0.5") as fresh:
        assert statuses(fresh, LIMIT + 1) == [404] * LIMIT + [429]
