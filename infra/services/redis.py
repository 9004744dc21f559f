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
    ManagedService,
    ServiceStartError,
    pid_alive,
    port_open,
    read_pid,
    stop_pid,
)
from infra.settings import Settings

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
# Debian's hook that tells maintainer scripts whether they may start services; exit 101 means "no".
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class RedisService(ManagedService):
    """Installs, starts, probes and stops the local Redis instance."""

    name = "redis"

    start_timeout_s = START_TIMEOUT_S
    probe_interval_s = 0.1

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.redis_port)
        self.config_file = self.data_dir / "redis.conf"

    def install(self) -> None:
        """Install Debian's redis-server when missing (root only); its own system service stays stopped."""
        if shutil.which("redis-server"):
            return
        if os.geteuid() != 0:
            reason = "redis-server is not installed: run `apt-get install -y redis-server` as root"
            raise ServiceStartError(self.name, reason, None)
        self._apt_install()

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
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            stop_pid(self.pid_file, timeout=STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)

    def _client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host, port=self.port, socket_timeout=5.0, socket_connect_timeout=1.0
        )

    def answers(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False  # includes BUSY/LOADING while the AOF is replayed

    def server_version(self) -> str | None:
        if not port_open(self.host, self.port):
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

    def prepare(self) -> None:
        """Write redis.conf from the settings."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._config_text())

    def server_argv(self) -> list[str]:
        return [self._redis_server(), str(self.config_file)]

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

