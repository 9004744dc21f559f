"""What every locally started service shares: detached processes with pid and log files, readiness waits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from infra.settings import Settings


class ServiceStartError(RuntimeError):
    """A service did not come up; the message names it and the log file to read."""

    def __init__(self, service: str, reason: str, log_file: Path | None) -> None:
        where = f" — read {log_file}" if log_file else ""
        super().__init__(f"{service} failed to start: {reason}{where}")
        self.service = service
        self.log_file = log_file


@dataclass(frozen=True)
class ServiceState:
    """One row of the `./run status` table."""

    name: str
    address: str
    version: str
    state: str  # "up" | "down"
    log_file: Path | None = None

    @property
    def up(self) -> bool:
        return self.state == "up"


class LocalService(Protocol):
    """A real service the repo installs, starts and stops itself."""

    name: str

    def install(self) -> None:
        """Fetch binaries or jars once into the cache (idempotent)."""

    def start(self) -> None:
        """Start if not running and wait until it answers; raise ServiceStartError otherwise."""

    def stop(self) -> None:
        """Stop cleanly if running (idempotent)."""

    def state(self) -> ServiceState:
        """Probe whether it answers now."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def dial_host(settings: Settings) -> str:
    """Address clients dial: the bind host, or loopback when bound to every interface."""
    bind = settings.bind_host
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "*", "") else bind


def refuse_taken_port(service: str, host: str, port: int, log_file: Path | None) -> None:
    """A port answering before we started anything belongs to someone else: say so, do not wait on it."""
    if port_open(host, port):
        raise ServiceStartError(service, f"port {port} is taken by another process", log_file)


def pid_alive(pid: int) -> bool:
    """True while the process runs; a dead child of ours is reaped first (kill -0 succeeds on zombies)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """An exited process not yet reaped by its parent (the sandbox's init reaps orphans slowly)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn_detached(
    argv: Sequence[str],
    log_file: Path,
    pid_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start argv in its own session, stdout/stderr appended to log_file, pid written to pid_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    service: str,
    log_file: Path | None,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.5,
) -> None:
    """Poll `ready` until true; fail fast when the process died, or after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if alive is not None and not alive():
            raise ServiceStartError(service, "process exited during start-up", log_file)
        time.sleep(interval)
    raise ServiceStartError(service, f"not ready after {timeout:.0f}s", log_file)


def stop_pid(pid_file: Path, timeout: float = 30.0) -> None:
    """SIGTERM the process group, SIGKILL it after timeout; remove the pid file."""
    pid = read_pid(pid_file)
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            _reap(pid)
    pid_file.unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect a child we spawned ourselves so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def service_paths(settings: Settings, name: str) -> tuple[Path, Path, Path]:
    """(data dir, log file, pid file) of one service under the project's home folder."""
    return (
        settings.data_dir / name,
        settings.log_dir / f"{name}.log",
        settings.run_dir / f"{name}.pid",
    )


def maven_copy_dependencies(
    settings: Settings,
    pom: Path,
    dest: Path,
    log_file: Path,
    properties: Mapping[str, str] | None = None,
) -> None:
    """Resolve a pom's runtime dependencies from Maven Central into dest (once; skipped when present)."""
    marker = dest / ".complete"
    if marker.exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(pom),
        f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={dest}",
        "-DincludeScope=runtime",
        # Pom properties such as a version chosen in settings (-Dkafka.version=...).
        *(f"-D{key}={value}" for key, value in (properties or {}).items()),
    ]
    with open(log_file, "ab") as log:
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise ServiceStartError(pom.parent.name, "mvn dependency:copy-dependencies failed", log_file)
    marker.write_text("ok\n")
