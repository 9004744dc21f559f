"""Kafka clients (kafka-python) configured from Settings: producer, consumer, admin, topic catalogue."""

from __future__ import annotations

from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from infra import topics
from infra.settings import Settings

log = structlog.get_logger(__name__)

# Batches fill for a few milliseconds before a send: throughput at a cost the relay does not notice.
PRODUCER_LINGER_MS = 5
PRODUCER_BATCH_BYTES = 64 * 1024


def bootstrap_servers(settings: Settings) -> list[str]:
    """`host:port` entries of BAZAAR_KAFKA_BOOTSTRAP (comma-separated)."""
    return [server.strip() for server in settings.kafka_bootstrap.split(",") if server.strip()]


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """An idempotent producer (acks=all) sending bytes keys and values; overrides win."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": "bazaar-producer",
        # Idempotence makes broker-side retries duplicate-free and keeps per-partition order
        # with up to 5 requests in flight; it requires acks=all.
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": PRODUCER_LINGER_MS,
        "batch_size": PRODUCER_BATCH_BYTES,
        "max_in_flight_requests_per_connection": 5,
        # Topics come from the catalogue only; a typo must fail, not create a topic.
        "allow_auto_create_topics": False,
    }
    config.update(overrides)
    log.debug("kafka.producer.create", client_id=config["client_id"], bootstrap=config["bootstrap_servers"])
    return KafkaProducer(**config)


def make_consumer(
    settings: Settings, *topic_names: str, group_id: str | None, **overrides: Any
) -> KafkaConsumer:
    """A consumer of bytes that commits only when told to and starts new groups at the earliest offset."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": f"bazaar-consumer-{group_id or 'nogroup'}",
        "group_id": group_id,
        # Offsets are committed after an event is applied, never by a timer (at-least-once + dedupe).
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # Skip aborted transactional writes; costs nothing for non-transactional producers.
        "isolation_level": "read_committed",
        "allow_auto_create_topics": False,
    }
    config.update(overrides)
    log.debug("kafka.consumer.create", group_id=group_id, topics=topic_names)
    return KafkaConsumer(*topic_names, **config)


def make_admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    """An admin client for topic and config management."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": "bazaar-admin",
    }
    config.update(overrides)
    return KafkaAdminClient(**config)


def ensure_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    """Create every missing catalogue topic on the configured cluster; returns the names created."""
    admin = make_admin(settings)
    try:
        return topics.ensure_topics(admin, topics.CATALOGUE, replication_factor=replication_factor)
    finally:
        admin.close()
