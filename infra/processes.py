"""The platform's own long-running processes: one table, started by `./run up` after the services."""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra.services.base import (
    ServiceStartError,
    ServiceState,
    pid_alive,
    port_open,
    read_pid,
    spawn_detached,
    stop_pid,
    wait_until,
)
from infra.settings import Settings


@dataclass(frozen=True)
class PlatformProcess:
    """One background process of the platform: a `bazaar` sub-command with a log and a pid file."""

    name: str
    args: tuple[str, ...]
    port: int | None = None
    health_path: str | None = None
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
        PlatformProcess("relay", ("relay",)),
        PlatformProcess("projections", ("serve-projections",)),
        PlatformProcess(
            "read-api",
            ("serve-reads",),
            port=settings.read_api_port,
            health_path="/health",
        ),
    ]


def _healthy(settings: Settings, proc: PlatformProcess) -> bool:
    if proc.port is None:
        return read_pid(proc.pid_file(settings)) is not None
    if proc.health_path is None:
        return port_open(settings.bind_host, proc.port)
    url = f"http://{settings.bind_host}:{proc.port}{proc.health_path}"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_process(settings: Settings, proc: PlatformProcess) -> None:
    """Start one process unless it already runs, then wait until it answers."""
    if read_pid(proc.pid_file(settings)) is not None and _healthy(settings, proc):
        return
    argv = [sys.executable, "-m", "infra.cli", *proc.args]
    pid = spawn_detached(argv, proc.log_file(settings), proc.pid_file(settings))
    wait_until(
        lambda: _healthy(settings, proc),
        proc.start_timeout,
        proc.name,
        proc.log_file(settings),
        alive=lambda: pid_alive(pid),
    )


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
