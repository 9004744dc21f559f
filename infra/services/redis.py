"""Our own Redis instance from Debian's `redis-server` package, with a config generated from the settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

import redis

from infra.services.base import (
    ServiceStartError,
    ServiceState,
    dial_host,
    pid_alive,
    port_open,
    read_pid,
    refuse_taken_port,
    service_paths,
    spawn_detached,
    stop_pid,
    wait_until,
)
from infra.settings import Settings

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
# Debian's hook that tells maintainer scripts whether they may start services; exit 101 means "no".
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class RedisService:
    """Installs, starts, probes and stops the local Redis instance."""

    name = "redis"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir, self.log_file, self.pid_file = service_paths(settings, self.name)
        self.config_file = self.data_dir / "redis.conf"

    @property
    def host(self) -> str:
        return dial_host(self.settings)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.settings.redis_port}"

    def install(self) -> None:
        """Install Debian's redis-server when missing (root only); its own system service stays stopped."""
        if shutil.which("redis-server"):
            return
        if os.geteuid() != 0:
            reason = "redis-server is not installed: run `apt-get install -y redis-server` as root"
            raise ServiceStartError(self.name, reason, None)
        self._apt_install()

    def start(self) -> None:
        """Start our instance unless it already answers, then wait for PING."""
        if self._answers():
            return
        pid = read_pid(self.pid_file)
        if pid is None:
            refuse_taken_port(self.name, self.host, self.settings.redis_port, self.log_file)
            self.install()
            self._write_config()
            argv = [self._redis_server(), str(self.config_file)]
            pid = spawn_detached(argv, self.log_file, self.pid_file, cwd=self.data_dir)
        # A pid that is alive but not answering is a start still under way (loading the AOF): wait for it.
        wait_until(
            self._answers,
            START_TIMEOUT_S,
            self.name,
            self.log_file,
            alive=lambda: _process_running(pid),
            interval=0.1,
        )

    def stop(self) -> None:
        """SHUTDOWN (which saves a snapshot and flushes the AOF), SIGTERM as the fallback (idempotent)."""
        pid = read_pid(self.pid_file)
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        # On failure stop_pid's SIGTERM below makes Redis run the same shutdown sequence.
        with suppress(redis.RedisError):
            self._client().shutdown()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _process_running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _process_running(pid):
            stop_pid(self.pid_file, timeout=STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)

    def state(self) -> ServiceState:
        """Up when the server answers INFO now; the version is the server's own."""
        version = self._server_version()
        return ServiceState(
            name=self.name,
            address=self.address,
            version=version or "-",
            state="up" if version else "down",
            log_file=self.log_file,
        )

    def _client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host, port=self.settings.redis_port, socket_timeout=5.0, socket_connect_timeout=1.0
        )

    def _answers(self) -> bool:
        if not port_open(self.host, self.settings.redis_port):
            return False
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False  # includes BUSY/LOADING while the AOF is replayed

    def _server_version(self) -> str | None:
        if not port_open(self.host, self.settings.redis_port):
            return None
        try:
            info = cast(dict[str, Any], self._client().info("server"))
        except redis.RedisError:
            return None
        return str(info.get("redis_version", "?"))

    def _redis_server(self) -> str:
        found = shutil.which("redis-server")
        if found is None:
            raise ServiceStartError(self.name, "redis-server is not installed", self.log_file)
        return found

    def _apt_install(self) -> None:
        """`apt-get install redis-server`; Debian's policy hook stops its scripts from starting it."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with open(self.log_file, "ab") as log, _services_not_started():
            for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "redis-server"]):
                result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
                if result.returncode != 0:
                    raise ServiceStartError(self.name, f"`{' '.join(argv)}` failed", self.log_file)

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._config_text())

    def _config_text(self) -> str:
        return f"""# Generated from Bazaar's settings on every start: edits here are overwritten.
bind {self.settings.bind_host}
port {self.settings.redis_port}
# No password is set, so only loopback clients are served even if bind is widened.
protected-mode yes
# The launcher keeps the process in the foreground and appends stdout to the log file.
daemonize no
supervised no
logfile ""
dir "{self.data_dir}"

# Persistence. Redis holds derived state (trends, feeds, rate limits) that stream jobs can rebuild
# from the event log, so losing up to a second of writes in a crash is acceptable; losing everything
# on every restart is not.
# AOF, fsynced once a second: a restart replays it, losing at most ~1 s of writes, without an fsync
# on every write slowing the stream jobs down.
appendonly yes
appendfilename "appendonly.aof"
appenddirname "appendonly"
appendfsync everysec
# AOF rewrites start from an RDB image, so replay on start stays fast as the log grows.
aof-use-rdb-preamble yes
# RDB snapshots as well: a compact point-in-time file to copy off as a backup.
dbfilename dump.rdb
save 3600 1 300 100 60 10000
rdbchecksum yes
# Refuse writes when a snapshot cannot be written, rather than carry on without persistence.
stop-writes-on-bgsave-error yes

# Redis 7 defaults, stated: clients may not move `dir`/`dbfilename` at run time, nor run DEBUG or MODULE.
enable-protected-configs no
enable-debug-command no
enable-module-command no
"""


@contextmanager
def _services_not_started() -> Iterator[None]:
    """Install Debian's policy-rc.d hook (exit 101) for the duration, unless the machine already has one."""
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# Temporary (Bazaar's Redis install): start no services.\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _process_running(pid: int) -> bool:
    """Alive and not a zombie: reap our own exited child first, since kill(pid, 0) succeeds on zombies."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return pid_alive(pid) and not _zombie(pid)
    return reaped == 0


def _zombie(pid: int) -> bool:
    """An exited process its parent (init, once our launcher has gone) has not reaped yet."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may itself hold spaces.
    return stat_line.rpartition(")")[2].split()[:1] == ["Z"]
