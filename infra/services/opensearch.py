"""The local search node: OpenSearch 2.x from Maven jars, run by a small launcher in its own JVM."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from infra.services.base import (
    ManagedService,
    ServiceStartError,
    may_dial,
    stop_pid,
)
from infra.services.maven import maven_copy_dependencies
from infra.settings import Settings

NAME = "opensearch"
JVM_DIR = Path(__file__).resolve().parent.parent / "jvm" / "opensearch"
POM = JVM_DIR / "pom.xml"
LOG4J_TEMPLATE = JVM_DIR / "log4j2.properties"
LAUNCHER_SOURCE = JVM_DIR / "src" / "main" / "java" / "bazaar" / "search" / "LocalNode.java"
LAUNCHER_CLASS = "bazaar.search.LocalNode"
# OpenSearch 2.x is built for Java 11-21; 3.x needs 21 and renamed the module classes the launcher names.
DEFAULT_JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 2.0


class OpenSearchService(ManagedService):
    """One single-node OpenSearch cluster on bind_host, data under .bazaar/data/opensearch."""

    name = NAME

    start_timeout_s = START_TIMEOUT_S

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.search_port, settings.search_transport_port)
        self.root = self.data_dir
        self.version = settings.search_version

    # -- paths -------------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def jar_dir(self) -> Path:
        return self.settings.cache_dir / "jars" / f"opensearch-{self.version}"

    @property
    def launcher_dir(self) -> Path:
        """Compiled launcher, keyed by its source and the versioned pom it was compiled against."""
        digest = _sha256(LAUNCHER_SOURCE.read_bytes() + self._pom_text().encode())[:12]
        return self.settings.cache_dir / "launcher" / f"opensearch-{self.version}-{digest}"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def server_cwd(self) -> Path:
        return self.home

    # -- LocalService ------------------------------------------------------------------------------------

    def install(self) -> None:
        """Resolve the server and module jars once, then compile the launcher when its source changed."""
        self._check_version()
        pom = self._render_pom()
        self._drop_jars_of_another_pom()
        try:
            maven_copy_dependencies(self.settings, pom, self.jar_dir, self.log_file)
        except ServiceStartError as exc:
            raise ServiceStartError(
                NAME, f"could not resolve OpenSearch {self.version} jars", self.log_file
            ) from exc
        (self.jar_dir / ".pom-sha256").write_text(_sha256(self._pom_text().encode()))
        self._compile_launcher()

    def stop(self) -> None:
        """SIGTERM the JVM (the launcher's hook closes the node cleanly) and wait for it to exit."""
        stop_pid(self.pid_file, timeout=STOP_TIMEOUT_S)

    def server_version(self) -> str | None:
        """The version GET / reports, None when the node does not answer."""
        info = self._get_json("/")
        return None if info is None else str(info.get("version", {}).get("number", self.version))

    def _check_version(self) -> None:
        major = self.version.split(".", 1)[0]
        if major != "2":
            raise ServiceStartError(
                NAME,
                f"search_version {self.version}: the local launcher runs OpenSearch 2.x (Java 17) only",
                None,
            )

    def _pom_text(self) -> str:
        """The pom with the configured server version (copy-dependencies takes no version argument)."""
        return re.sub(
            r"<opensearch\.version>[^<]*</opensearch\.version>",
            f"<opensearch.version>{self.version}</opensearch.version>",
            POM.read_text(),
            count=1,
        )

    def _render_pom(self) -> Path:
        """Write the versioned pom into the cache (rewritten only when it differs) for Maven to read."""
        text = self._pom_text()
        target = self.settings.cache_dir / "jvm" / f"opensearch-{self.version}" / "pom.xml"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        return target

    def _drop_jars_of_another_pom(self) -> None:
        """Refetch after a pom change (a module added): copy-dependencies skips a folder marked complete."""
        stamp = self.jar_dir / ".pom-sha256"
        current = _sha256(self._pom_text().encode())
        if (self.jar_dir / ".complete").exists() and (not stamp.exists() or stamp.read_text() != current):
            shutil.rmtree(self.jar_dir)

    def _compile_launcher(self) -> None:
        target = self.launcher_dir
        if (target / ".complete").exists():
            return
        staging = target.with_name(target.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        argv = [
            _java_tool("javac"),
            "--release",
            "17",
            "-nowarn",
            "-cp",
            str(self.jar_dir / "*"),
            "-d",
            str(staging),
            str(LAUNCHER_SOURCE),
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise ServiceStartError(NAME, "javac could not compile the launcher", self.log_file)
        (staging / ".complete").write_text("ok\n")
        self._drop_stale_launchers()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)

    def _drop_stale_launchers(self) -> None:
        """Launchers compiled from earlier sources of the same version are dead weight."""
        for old in self.launcher_dir.parent.glob(f"opensearch-{self.version}-*"):
            if old != self.launcher_dir and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)

    # -- start -------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Lay out path.home with a fresh config on every start, so settings changes take effect."""
        for folder in ("config", "modules", "plugins"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        for folder in ("data", "logs", "tmp"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.home / "config" / "opensearch.yml").write_text(self._config_yaml())
        shutil.copyfile(LOG4J_TEMPLATE, self.home / "config" / "log4j2.properties")

    def _node_settings(self) -> dict[str, Any]:
        s = self.settings
        return {
            "cluster.name": "bazaar",
            "node.name": "bazaar-search",
            "path.data": str(self.root / "data"),
            "path.logs": str(self.root / "logs"),
            "discovery.type": "single-node",
            "network.host": s.bind_host,
            "http.port": s.search_port,
            "transport.port": s.search_transport_port,
            # A nearly full developer disk would otherwise turn every index read-only mid-test.
            "cluster.routing.allocation.disk.threshold_enabled": False,
        }

    def _config_yaml(self) -> str:
        header = "# Written by infra/services/opensearch.py on every start; edit Settings, not this file.\n"
        # JSON scalars are valid YAML and quote paths safely.
        lines = [f"{key}: {json.dumps(value)}" for key, value in self._node_settings().items()]
        return header + "\n".join(lines) + "\n"

    def server_argv(self) -> list[str]:
        heap = self.settings.search_heap
        classpath = os.pathsep.join([str(self.launcher_dir), str(self.jar_dir / "*")])
        return [
            _java_tool("java"),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:-OmitStackTraceInFastThrow",
            f"-Djava.io.tmpdir={self.root / 'tmp'}",
            "-Dfile.encoding=UTF-8",
            "-Djava.awt.headless=true",
            "-Djna.nosys=true",
            # The distribution's jvm.options: the same date parsing as a packaged node.
            "-Djava.locale.providers=SPI,COMPAT",
            # Netty would otherwise try to set the processor count a second time and fail.
            "-Dopensearch.set.netty.runtime.available.processors=false",
            "-Dio.netty.noUnsafe=true",
            "-Dio.netty.noKeySetOptimization=true",
            "-Dio.netty.recycler.maxCapacityPerThread=0",
            # The launcher shuts log4j down itself, after the node has closed.
            "-Dlog4j.shutdownHookEnabled=false",
            "-Dlog4j2.disable.jmx=true",
            "-cp",
            classpath,
            LAUNCHER_CLASS,
            str(self.home),
        ]

    # -- HTTP probes -------------------------------------------------------------------------------------

    def answers(self) -> bool:
        health = self._get_json("/_cluster/health")
        return health is not None and health.get("status") in ("yellow", "green")

    def _get_json(self, path: str) -> dict[str, Any] | None:
        """GET a JSON object from the local node, or None when it does not answer properly."""
        if not may_dial(self.host, self.port):
            return None
        request = urllib.request.Request(self.address + path, headers=self._auth_headers())
        try:
            with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
                body = json.loads(response.read())
        except (OSError, ValueError):  # URLError, HTTPError, timeouts and resets are all OSErrors
            return None
        return body if isinstance(body, dict) else None

    def _auth_headers(self) -> dict[str, str]:
        s = self.settings
        if not s.search_username:
            return {}
        token = base64.b64encode(f"{s.search_username}:{s.search_password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _java_tool(tool: str) -> str:
    """java/javac of OPENSEARCH_JAVA_HOME, else the machine's Java 17, else JAVA_HOME, else PATH."""
    candidates = [os.environ.get("OPENSEARCH_JAVA_HOME"), str(DEFAULT_JAVA_HOME), os.environ.get("JAVA_HOME")]
    for home in candidates:
        if home and (Path(home) / "bin" / tool).exists():
            return str(Path(home) / "bin" / tool)
    return tool
