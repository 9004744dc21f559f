"""The one place that reads the environment: every setting is `BAZAAR_<NAME>`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Hosts, ports and paths of every service and platform process."""

    model_config = SettingsConfigDict(env_prefix="BAZAAR_", extra="ignore")

    # Where local services keep data, logs, pid files and the jar cache (git-ignored).
    home: Path = REPO_ROOT / ".bazaar"
    # False when every adapter points at remote clusters: `./run up` then starts nothing.
    manage_services: bool = True
    bind_host: str = "127.0.0.1"
    # Every default port lies below 32768, outside Linux's ephemeral range (32768-60999), so that no
    # client socket (nor a probe connecting to itself) can hold a port before its server binds it.

    pg_host: str = "127.0.0.1"
    pg_port: int = 15432
    pg_user: str = "postgres"
    pg_password: str = ""
    pg_dbname: str = "bazaar"
    pg_pool_size: int = 10
    # Unprivileged OS user that owns the local cluster (PostgreSQL refuses to run as root).
    pg_os_user: str = "bazaar"
    # The write side's event store: "memory" is eventsourcing's in-memory store for the handler unit
    # tests (one process, nothing kept, nothing relayed); every platform process runs on "postgres".
    event_store: Literal["postgres", "memory"] = "postgres"

    redis_host: str = "127.0.0.1"
    redis_port: int = 16379
    redis_db: int = 0

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_version: str = "4.1.1"
    kafka_heap: str = "768m"

    search_flavour: Literal["opensearch", "elasticsearch"] = "opensearch"
    search_url: str = "http://127.0.0.1:19200"
    search_port: int = 19200
    search_transport_port: int = 19300
    search_version: str = "2.19.6"
    search_heap: str = "1g"
    search_username: str | None = None
    search_password: str | None = None

    command_api_port: int = 8000
    read_api_port: int = 8001
    # Read API throttle: requests per client IP per window (0 turns it off), counted in Redis.
    read_rate_limit: int = 100
    read_rate_limit_window_s: int = 1
    # Read-your-writes: a read with `?after=` waits at most this long (then 408); Kafka end offsets are
    # fetched at most once per TTL while reads wait.
    read_after_timeout_s: float = 5.0
    read_end_offsets_ttl_s: float = 0.1
    # Trend job (stream_jobs): event-time lateness allowed past the watermark, how long a caught-up
    # partition stays quiet before it stops holding the watermark back, records per poll, ranking expiry.
    trends_allowed_lateness_s: int = 60
    trends_idle_partition_s: float = 5.0
    trends_max_poll_records: int = 5000
    trends_ranking_ttl_5m_s: int = 3600
    trends_ranking_ttl_1h_s: int = 3 * 3600
    # Auto-boost agent (stream_jobs/boost_agent.py): the rule's thresholds, how long a boost lasts after its
    # window ends, and the command API it sends BoostListing to (empty: this host's command API port).
    boost_min_views: int = 20
    boost_min_peer_views: int = 20
    boost_lift: float = 1.5
    boost_duration_s: int = 3600
    boost_command_api_url: str = ""
    # The feed (read_api/queries/feed.py): how long a user's computed feed is cached in Redis.
    feed_cache_ttl_s: int = 60
    # Enrichment worker (gpu_workers): consumer group, batch size per device, how long a batch may wait
    # to fill, command API calls in flight, attempts before the DLQ, its admin service account (an empty
    # password is generated once under home/secrets), its topic prefix (tests isolate theirs), and the
    # head's weights file (empty: the one shipped in gpu_workers/weights).
    enrichment_group: str = "bazaar-enrichment"
    enrichment_device: Literal["auto", "cpu", "cuda"] = "auto"
    enrichment_batch_size_cpu: int = 64
    enrichment_batch_size_cuda: int = 256
    enrichment_batch_wait_ms: int = 200
    enrichment_http_concurrency: int = 8
    enrichment_max_attempts: int = 5
    enrichment_account_email: str = "enrichment-worker@bazaar.internal"
    enrichment_account_password: str = ""
    enrichment_command_api_url: str = ""
    enrichment_topic_prefix: str = "bazaar."
    enrichment_weights: str = ""

    # HS256 secret for access tokens; empty means one generated once under home/secrets.
    jwt_secret: str = ""
    jwt_ttl_s: int = 3600
    platform_fee_bps: int = 500
    # Group commit: how long the writer waits for more commands before committing a batch.
    group_commit_wait_ms: float = 0.5
    group_commit_max_batch: int = 512

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def pg_conninfo(self) -> str:
        password = f" password={self.pg_password}" if self.pg_password else ""
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={self.pg_dbname} user={self.pg_user}{password}"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process."""
    return Settings()
