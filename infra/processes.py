"""The platform's own long-running processes: one table, started by `./run up` after the services."""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra.services import ports
from infra.services.base import (
    ServiceStartError,
    ServiceState,
    dial_host,
    log_size,
    may_dial,
    pid_alive,
    port_open,
    read_pid,
    spawn_detached,
    start_failure,
    stop_pid,
    wait_until,
)
from infra.settings import Settings


@dataclass(frozen=True)
class PlatformProcess:
    """One background process of the platform: a `bazaar` sub-command with a log and a pid file.

    It is ready when it listens on its port and its health route answers 200, or, without a port, once it
    logged one of `ready_events` (structlog event names) after this start.
    """

    name: str
    args: tuple[str, ...]
    port: int | None = None
    health_path: str | None = None
    ready_events: tuple[str, ...] = ()
    start_timeout: float = 60.0

    def log_file(self, settings: Settings) -> Path:
        return settings.log_dir / f"{self.name}.log"

    def pid_file(self, settings: Settings) -> Path:
        return settings.run_dir / f"{self.name}.pid"


def platform_processes(settings: Settings) -> list[PlatformProcess]:
    """Every process `./run up` starts, in order; later entries may depend on earlier ones."""
    return [
        PlatformProcess(
            "command-api",
            ("serve-commands",),
            port=settings.command_api_port,
            health_path="/health",
        ),
        # Recovered: the Merkle tree rebuilt from the store matches the relay's position and signed head;
        # waiting: another relay of the same name holds the lock (a standby is healthy too).
        PlatformProcess("relay", ("relay",), ready_events=("relay.recovered", "relay.lock.waiting"),
                        start_timeout=180.0),
        # Seeked: partitions assigned and every projection positioned at its checkpoint.
        PlatformProcess("projections", ("serve-projections",), ready_events=("projections.seeked",),
                        start_timeout=120.0),
        PlatformProcess(
            "read-api",
            ("serve-reads",),
            port=settings.read_api_port,
            health_path="/health",
        ),
        # Assigned: every activity partition positioned at the offsets committed with the window state.
        PlatformProcess("trends-job", ("jobs", "run", "trends"), ready_events=("trends.job.assigned",)),
        # The enrichment worker (`bazaar workers enrich`) is not started by `up` yet: run beside the suite's
        # own workers it enriches their listings a second time (their tests need isolated stores first).
    ]


def _healthy(settings: Settings, proc: PlatformProcess) -> bool:
    if proc.port is None:
        return read_pid(proc.pid_file(settings)) is not None
    if proc.health_path is None:
        return port_open(settings.bind_host, proc.port)
    if not may_dial(dial_host(settings), proc.port):
        return False
    url = f"http://{dial_host(settings)}:{proc.port}{proc.health_path}"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _logged(log_file: Path, since: int, events: tuple[str, ...]) -> bool:
    """True when the log holds one of the event names (as a JSON string) after byte offset `since`."""
    try:
        with open(log_file, "rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return False
    return any(f'"{event}"' in text for event in events)


def _ready(settings: Settings, proc: PlatformProcess, pid: int, since: int) -> bool:
    """Listening itself before any probe connects; the ready event logged by this start; healthy."""
    if proc.port is not None and not ports.bound_by(pid, proc.port):
        return False
    if proc.ready_events and not _logged(proc.log_file(settings), since, proc.ready_events):
        return False
    return _healthy(settings, proc)


def start_process(settings: Settings, proc: PlatformProcess) -> None:
    """Start one process unless it already runs, then wait until it is ready.

    A process that exits first, or is not ready in time (it is then stopped), raises ServiceStartError
    quoting the last lines of its own log: its reason.
    """
    if read_pid(proc.pid_file(settings)) is not None and _healthy(settings, proc):
        return
    log_file = proc.log_file(settings)
    since = log_size(log_file)
    pid = spawn_detached([sys.executable, "-m", "infra.cli", *proc.args], log_file, proc.pid_file(settings))
    try:
        wait_until(
            lambda: _ready(settings, proc, pid, since),
            proc.start_timeout,
            proc.name,
            log_file,
            alive=lambda: pid_alive(pid),
            failure=lambda died: start_failure(proc.name, pid, _ports(proc), log_file, since, died),
        )
    except ServiceStartError:
        stop_process(settings, proc)
        raise


def _ports(proc: PlatformProcess) -> tuple[int, ...]:
    return () if proc.port is None else (proc.port,)


def stop_process(settings: Settings, proc: PlatformProcess) -> None:
    """SIGTERM (graceful shutdown), then SIGKILL after a grace period."""
    stop_pid(proc.pid_file(settings), timeout=20)


def process_state(settings: Settings, proc: PlatformProcess) -> ServiceState:
    """Row of the status table for one platform process."""
    address = f"{settings.bind_host}:{proc.port}" if proc.port else "-"
    up = read_pid(proc.pid_file(settings)) is not None and _healthy(settings, proc)
    return ServiceState(proc.name, address, "bazaar", "up" if up else "down", proc.log_file(settings))


__all__ = [
    "PlatformProcess",
    "ServiceStartError",
    "platform_processes",
    "process_state",
    "start_process",
    "stop_process",
]
