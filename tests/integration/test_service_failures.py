"""A service or platform process that cannot start says which one, why (the port's holder, its own log) and
which log file to read; probes never dial a port before its server listens on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import PlatformProcess, start_process
from infra.services import ports
from infra.services.base import ServiceStartError, port_open, read_pid
from infra.services.redis import RedisService
from infra.settings import Settings
from tests.support import free_port, require_services


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket of this test process: the foreign holder of a port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_redis_on_a_taken_port_names_the_port_its_holder_and_its_log(settings: Settings, tmp_path: Path) -> None:
    require_services(settings, "postgres")
    clashing = Settings(home=tmp_path / "home", redis_port=settings.pg_port)

    with pytest.raises(ServiceStartError) as failure:
        RedisService(clashing).start()

    message = str(failure.value)
    assert failure.value.service == "redis"
    assert f"port {settings.pg_port} is taken by pid " in message
    assert "postgres" in message  # the holder's command line
    assert str(clashing.log_dir / "redis.log") in message


def test_a_client_socket_on_the_port_is_named_when_the_bind_fails(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = free_port()
    with socket.socket() as client:
        client.bind(("127.0.0.1", port))
        client.connect(listener.getsockname())  # a connection whose local end is the service's port

        with pytest.raises(ServiceStartError) as failure:
            RedisService(Settings(home=tmp_path / "home", redis_port=port)).start()

    message = str(failure.value)
    assert f"could not bind port {port}: it is held by pid {os.getpid()}" in message
    assert "as a client socket" in message
    assert "Address already in use" in message  # Redis's own words, from its log
    assert read_pid(tmp_path / "home" / "run" / "redis.pid") is None


def test_a_probe_does_not_dial_a_port_nobody_listens_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def dial(*_: object, **__: object) -> None:
        raise AssertionError("port_open connected to a port with no listener")

    monkeypatch.setattr(socket, "create_connection", dial)
    assert port_open("127.0.0.1", free_port()) is False


def test_the_port_counts_as_bound_only_once_the_child_itself_listens(listener: socket.socket) -> None:
    taken = listener.getsockname()[1]
    script = "import socket, sys, time\ns = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); " \
             "s.listen(); print('listening', flush=True); time.sleep(60)"
    own = free_port()
    child = subprocess.Popen([sys.executable, "-c", script, str(own)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "listening"
        assert ports.bound_by(child.pid, own)
        assert not ports.bound_by(child.pid, taken)  # someone listens there, but not the child
        assert ports.bound_by(os.getpid(), taken)
    finally:
        child.kill()
        child.wait()
    assert not ports.bound_by(child.pid, own)


def test_a_platform_process_that_refuses_to_start_reports_its_own_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAZAAR_HOME", str(tmp_path / "home"))
    settings = Settings()
    proc = PlatformProcess("command-api", ("serve-commands", "--port", "not-a-port"), port=free_port(),
                           health_path="/health")

    started = time.monotonic()
    with pytest.raises(ServiceStartError) as failure:
        start_process(settings, proc)

    assert time.monotonic() - started < 30, "a process that exited was waited on until the timeout"
    message = str(failure.value)
    assert "command-api failed to start: process exited during start-up" in message
    assert "Invalid value for '--port'" in message  # typer's own words, from the process's log
    assert read_pid(proc.pid_file(settings)) is None


def test_an_api_on_a_port_held_by_another_process_names_the_holder(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: socket.socket
) -> None:
    require_services(settings, "postgres")
    port = listener.getsockname()[1]
    monkeypatch.setenv("BAZAAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BAZAAR_READ_API_PORT", str(port))
    isolated = Settings()
    proc = PlatformProcess("read-api", ("serve-reads",), port=port, health_path="/health")

    with pytest.raises(ServiceStartError) as failure:
        start_process(isolated, proc)

    message = str(failure.value)
    assert f"read-api failed to start: could not bind port {port}: it is held by pid {os.getpid()}" in message
    assert "listening" in message
    assert str(proc.log_file(isolated)) in message
