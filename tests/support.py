"""Helpers shared by tests and benchmarks: the guard that the real services answer, a free port, an empty
topic made anew, waiting for an HTTP server."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from infra.services.base import port_open
from infra.settings import Settings


def require_services(settings: Settings, *names: str) -> None:
    """Fail (never skip) with the command to run when a service the test needs is down."""
    host_ports = {
        "postgres": (settings.pg_host, settings.pg_port),
        "redis": (settings.redis_host, settings.redis_port),
        "kafka": tuple(settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)),
        "opensearch": (settings.bind_host, settings.search_port),
        "command-api": (settings.bind_host, settings.command_api_port),
        "read-api": (settings.bind_host, settings.read_api_port),
    }
    down = [name for name in names if not port_open(host_ports[name][0], int(host_ports[name][1]))]
    if down:
        pytest.fail(f"services down: {', '.join(down)} — start them with ./run up", pytrace=False)


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def recreate_topic(settings: Settings, topic: str) -> None:
    """Delete a one-partition topic and create it again, empty (a topic cannot drop its tail otherwise)."""
    from kafka.admin import NewTopic

    from infra.adapters.kafka import make_admin

    admin = make_admin(settings)
    try:
        admin.delete_topics([topic])
        for attempt in range(40):
            try:
                admin.create_topics([NewTopic(topic, 1, 1)])
                return
            except Exception:  # noqa: BLE001 - the deletion is still under way
                time.sleep(0.25 * (attempt + 1))
    finally:
        admin.close()


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    """Return once `url` answers 200; raise when it has not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")
