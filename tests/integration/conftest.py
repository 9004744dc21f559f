"""Fixtures of the integration tests: a command API served over real HTTP on the real event store."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from commands.api import create_app
from commands.application import Marketplace
from infra.settings import Settings
from tests.support import require_services


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def marketplace(settings: Settings) -> Iterator[Marketplace]:
    require_services(settings, "postgres")
    app = Marketplace(settings)
    yield app
    app.close()


@pytest.fixture(scope="module")
def api(settings: Settings, marketplace: Marketplace) -> Iterator[httpx.Client]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, marketplace), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=30) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)


