"""A single-node Kafka (KRaft, broker and controller in one JVM) from Apache Kafka's jars on Maven Central."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from infra.services.base import (
    ManagedService,
    ServiceStartError,
    port_open,
    stop_pid,
)
from infra.services.maven import maven_copy_dependencies
from infra.settings import REPO_ROOT, Settings

JVM_DIR = REPO_ROOT / "infra" / "jvm" / "kafka"
POM = JVM_DIR / "pom.xml"
LOG4J_CONFIG = JVM_DIR / "log4j2.properties"

# The broker's main class and the storage formatter; both live in the kafka_2.13 (core) jar.
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
NODE_ID = 1
# Internal topics get far fewer partitions than Kafka's default 50: one local node on two cores.
INTERNAL_TOPIC_PARTITIONS = 10
# Kafka's own launch script flags, minus the fixed 1 GB heap.
JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


class KafkaService(ManagedService):
    """Installs, starts, probes and stops the local Kafka node."""

    name = "kafka"

    start_timeout_s = START_TIMEOUT_S
    stop_after_failed_start = True

    def __init__(self, settings: Settings) -> None:
        # `address` is the PLAINTEXT listener's host:port; the controller binds the second port.
        super().__init__(settings, settings.kafka_port, settings.kafka_controller_port)
        self.jar_dir = settings.cache_dir / "jars" / f"kafka-{settings.kafka_version}"
        self.config_file = self.data_dir / "server.properties"
        self.log_dirs = self.data_dir / "kraft-logs"

    def install(self) -> None:
        """Resolve the broker's jars once into the cache."""
        maven_copy_dependencies(
            self.settings,
            POM,
            self.jar_dir,
            self.log_file,
            properties={"kafka.version": self.settings.kafka_version},
        )

    def stop(self) -> None:
        """SIGTERM the node (a controlled shutdown) and wait for it to exit."""
        stop_pid(self.pid_file, timeout=STOP_TIMEOUT_S)

    def server_version(self) -> str | None:
        """The configured version once the node answers a metadata request."""
        return self.settings.kafka_version if self.answers() else None

    def answers(self) -> bool:
        """True when an admin client can list topics (a port alone opens before the broker serves)."""
        if not port_open(self.host, self.port):
            return False
        # Imported here: kafka-python takes ~0.1 s to import, and only a probe needs it.
        from kafka.admin import KafkaAdminClient

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.address,
                client_id="bazaar-kafka-probe",
                bootstrap_timeout_ms=3000,
                request_timeout_ms=5000,
            )
        except Exception:
            return False
        try:
            admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            admin.close()

    def prepare(self) -> None:
        """(Re)write server.properties from the current settings; format the storage on the first start."""
        self._write_config()
        self._format_storage_once()

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dirs.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self._server_properties().items()]
        header = "# Written by infra/services/kafka.py on every start.\n"
        self.config_file.write_text(header + "\n".join(lines) + "\n")

    def _server_properties(self) -> dict[str, str | int]:
        """One combined broker+controller node; every internal topic fits a single replica."""
        bind, host = self.settings.bind_host, self.host
        port, controller_port = self.settings.kafka_port, self.settings.kafka_controller_port
        return {
            "process.roles": "broker,controller",
            "node.id": NODE_ID,
            "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
            "listeners": f"PLAINTEXT://{bind}:{port},CONTROLLER://{bind}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": 0,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": INTERNAL_TOPIC_PARTITIONS,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": INTERNAL_TOPIC_PARTITIONS,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "share.coordinator.state.topic.num.partitions": INTERNAL_TOPIC_PARTITIONS,
            "min.insync.replicas": 1,
            "default.replication.factor": 1,
        }

    def _format_storage_once(self) -> None:
        """Give the log dir a cluster id and the controller's first record, unless done before."""
        if (self.log_dirs / "meta.properties").exists():
            return
        cluster_id = self._run_tool("random-uuid").strip().splitlines()[-1]
        self._run_tool("format", "--standalone", "-t", cluster_id, "-c", str(self.config_file))

    def _run_tool(self, *args: str) -> str:
        """Run the storage tool in a short-lived JVM; its output also goes to the service log."""
        argv = [self._java(), "-Xmx256m", *self._common_jvm_args(), STORAGE_TOOL, *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        with open(self.log_file, "a", encoding="utf-8") as log:
            log.write(f"$ {STORAGE_TOOL} {' '.join(args)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise ServiceStartError(self.name, f"{STORAGE_TOOL} {args[0]} failed", self.log_file)
        return result.stdout

    def server_argv(self) -> list[str]:
        heap = f"-Xmx{self.settings.kafka_heap}"
        return [self._java(), heap, *JVM_FLAGS, *self._common_jvm_args(), BROKER_MAIN, str(self.config_file)]

    def _common_jvm_args(self) -> list[str]:
        # The JVM expands `dir/*` itself; no shell is involved.
        return ["-cp", str(self.jar_dir / "*"), f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"]

    def _java(self) -> str:
        """JAVA_HOME's java when set (Kafka 4 needs Java 17+), else the one on PATH."""
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").exists():
            return str(Path(java_home) / "bin" / "java")
        found = shutil.which("java")
        if found is None:
            raise ServiceStartError(self.name, "no java on PATH (Java 17+ is needed)", self.log_file)
        return found

