"""Helpers shared by tests: the guard that the real services answer, a free port."""

from __future__ import annotations

import socket

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
