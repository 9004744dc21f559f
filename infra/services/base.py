"""What every locally started service shares: detached processes with pid and log files, readiness waits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from infra.services import ports
from infra.settings import Settings

# How much of a log a start-up failure quotes.
TAIL_LINES = 15
TAIL_BYTES = 64 * 1024


class ServiceStartError(RuntimeError):
    """A service did not come up; the message names it, the log file to read and the log's last lines."""

    def __init__(self, service: str, reason: str, log_file: Path | None, tail: str = "") -> None:
        where = f" — read {log_file}" if log_file else ""
        last_lines = f"\n  last lines of its log:\n{_indent(tail)}" if tail.strip() else ""
        super().__init__(f"{service} failed to start: {reason}{where}{last_lines}")
        self.service = service
        self.reason = reason
        self.log_file = log_file
        self.tail = tail


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip().splitlines())


def log_tail(log_file: Path | None, lines: int = TAIL_LINES, since: int = 0) -> str:
    """The last lines a process wrote to its log (after byte offset `since`: this start's, not older)."""
    if log_file is None:
        return ""
    try:
        with open(log_file, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(since, size - TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_size(log_file: Path) -> int:
    """Where this start's output begins in an appended-to log file."""
    try:
        return log_file.stat().st_size
    except OSError:
        return 0


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
    """True when something accepts TCP connections on host:port.

    On this machine nothing is dialled unless the kernel lists a listener: a connect to a port nobody
    listens on can connect to itself and hold the port a starting service needs (see ports.py).
    """
    if not may_dial(host, port):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def dial_host(settings: Settings) -> str:
    """Address clients dial: the bind host, or loopback when bound to every interface."""
    bind = settings.bind_host
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "*", "") else bind


def may_dial(host: str, port: int) -> bool:
    """False when host is this machine and the kernel lists no listener on port: dialling could self-connect."""
    return not (_is_local(host) and ports.tables_readable()) or ports.listening(port)


def _is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "") or host.startswith("127.")


def refuse_taken_port(service: str, host: str, port: int, log_file: Path | None) -> None:
    """A port listened on before we started anything belongs to someone else: name the holder, do not wait."""
    taken = ports.listening(port) if _is_local(host) and ports.tables_readable() else port_open(host, port)
    if taken:
        raise ServiceStartError(service, f"port {port} is taken by {ports.holder(port) or 'another process'}",
                                log_file)


def start_failure(service: str, pid: int, port_list: Sequence[int], log_file: Path | None, since: int,
                  died: bool) -> ServiceStartError:
    """Why a start failed: a port someone else holds (the usual cause of a failed bind), then the log tail."""
    for port in port_list:
        held = ports.holder(port) if died or not ports.bound_by(pid, port) else None
        if held is not None:
            return ServiceStartError(service, f"could not bind port {port}: it is held by {held}", log_file,
                                     log_tail(log_file, since=since))
    tail = log_tail(log_file, since=since)
    reason = "process exited during start-up" if died else "not ready in time"
    if died and "already in use" in tail.lower():
        # A socket that is bound but neither listening nor connected is not in the kernel's tables.
        named = [str(port) for port in port_list if str(port) in tail] or [str(port) for port in port_list]
        reason = f"could not bind port {'/'.join(named)}: address already in use (holder not visible)"
    return ServiceStartError(service, reason, log_file, tail)


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
    failure: Callable[[bool], ServiceStartError] | None = None,
) -> None:
    """Poll `ready` until true; fail fast when the process died, or after timeout.

    `failure(died)` explains the failure (a port someone holds, the log's last lines); by default the
    log's last lines are quoted.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if alive is not None and not alive():
            if failure is not None:
                raise failure(True)
            raise ServiceStartError(service, "process exited during start-up", log_file, log_tail(log_file))
        time.sleep(interval)
    if failure is not None:
        raise failure(False)
    raise ServiceStartError(service, f"not ready after {timeout:.0f}s", log_file, log_tail(log_file))


class ManagedService:
    """What the local services share: paths, the address clients dial, port checks, start and ready wait.

    A subclass names its ports and says how to prepare, launch and probe its server.
    """

    name: str
    start_timeout_s = 60.0
    probe_interval_s = 0.5
    # Kafka: a JVM that never became ready is stopped rather than left half up.
    stop_after_failed_start = False

    def __init__(self, settings: Settings, port: int, *other_ports: int) -> None:
        self.settings = settings
        self.data_dir, self.log_file, self.pid_file = service_paths(settings, self.name)
        self.port = port  # the port clients connect to
        self.ports = (port, *other_ports)  # every port the server binds

    def answers(self) -> bool:
        """True when the server answers a real request now."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write the server's configuration (and anything else it needs) before it is launched."""

    def server_argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def server_cwd(self) -> Path:
        return self.data_dir

    def start(self) -> None:
        """Start unless it already answers; wait until the child listens on its port and answers."""
        if self.answers():
            return
        pid, since = read_pid(self.pid_file), 0
        if pid is None:
            self.refuse_taken_ports()
            self.install()
            self.prepare()
            pid, since = self.spawn(self.server_argv(), cwd=self.server_cwd)
        # A pid that is alive but not answering is a start still under way: wait for it as well.
        try:
            self.wait_ready(pid, self.answers, self.start_timeout_s, since, self.probe_interval_s)
        except ServiceStartError:
            if self.stop_after_failed_start:
                self.stop()
            raise

    def install(self) -> None:
        """Fetch what the server needs once (idempotent)."""

    def stop(self) -> None:
        stop_pid(self.pid_file)

    def server_version(self) -> str | None:
        """The running server's version, None when it does not answer now."""
        raise NotImplementedError

    def state(self) -> ServiceState:
        """One row of `./run status`, probed now."""
        version = self.server_version()
        return ServiceState(self.name, self.address, version or "-", "up" if version else "down", self.log_file)

    @property
    def host(self) -> str:
        return dial_host(self.settings)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def refuse_taken_ports(self) -> None:
        for port in self.ports:
            refuse_taken_port(self.name, self.host, port, self.log_file)

    def spawn(self, argv: Sequence[str], cwd: Path | None = None) -> tuple[int, int]:
        """Start the server detached; (its pid, where its output starts in the log)."""
        since = log_size(self.log_file)
        return spawn_detached(argv, self.log_file, self.pid_file, cwd=cwd), since

    def wait_ready(self, pid: int, answers: Callable[[], bool], timeout: float, since: int = 0,
                   interval: float = 0.5) -> None:
        """Wait until the child itself listens on its port, and only then probe it (no self-connect)."""
        wait_until(
            lambda: ports.bound_by(pid, self.port) and answers(),
            timeout,
            self.name,
            self.log_file,
            alive=lambda: pid_alive(pid),
            interval=interval,
            failure=lambda died: start_failure(self.name, pid, self.ports, self.log_file, since, died),
        )


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
