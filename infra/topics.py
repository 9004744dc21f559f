"""The Kafka topic catalogue as data, and an idempotent way to create it on a cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kafka.errors as kafka_errors
import structlog

from schemas import names

log = structlog.get_logger(__name__)

FOREVER = -1
SEVEN_DAYS_MS = 7 * 24 * 60 * 60 * 1000
DOMAIN_PARTITIONS = 3


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, partitions, retention, what it is for and which event types it carries."""

    name: str
    partitions: int
    retention_ms: int
    description: str
    # Filled in as the domain's event types are written (schemas/); empty means "not listed yet".
    event_types: tuple[str, ...] = ()
    extra_configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def configs(self) -> dict[str, str]:
        """Topic-level configs sent on creation."""
        configs = {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete"}
        if self.retention_ms == FOREVER:
            # A size cap would delete events as surely as a time limit; replay from offset 0 needs both off.
            configs["retention.bytes"] = "-1"
        return {**configs, **self.extra_configs}


def _domain(aggregate: str, description: str) -> TopicSpec:
    """An event-sourced aggregate's topic: kept forever so any consumer can replay from offset 0."""
    return TopicSpec(names.domain_topic(aggregate), DOMAIN_PARTITIONS, FOREVER, description)


CATALOGUE: tuple[TopicSpec, ...] = (
    _domain("listing", "Listing events: drafted, revised, published, repriced, enriched, suspended, sold."),
    _domain(
        "order", "Order and escrow events: placed, held, shipped, delivered, released, refunded, disputed."
    ),
    _domain("wallet", "Wallet events: opened, deposited, held, released, credited, withdrawn."),
    _domain("licence", "Licence events for AI products: issued, usage recorded, renewed, revoked, expired."),
    _domain("trust", "Trust score events: signals recorded and scores recomputed, per user."),
    _domain("user", "User events: registered with a role; personal data crypto-shredded on erasure."),
    TopicSpec(
        names.topic(names.CHECKPOINTS_TOPIC),
        1,
        FOREVER,
        "Signed Merkle tree heads over the whole event log, one partition to keep them in order.",
    ),
    TopicSpec(
        names.topic(names.ACTIVITY_TOPIC),
        DOMAIN_PARTITIONS,
        SEVEN_DAYS_MS,
        "High-volume behaviour (views, searches, cart adds); not event-sourced.",
    ),
    TopicSpec(
        names.topic(names.TRENDS_TOPIC), DOMAIN_PARTITIONS, SEVEN_DAYS_MS,
        "Windowed trend aggregates from the stream jobs.",
    ),
    TopicSpec(
        names.topic(names.ENRICHMENT_DLQ_TOPIC),
        DOMAIN_PARTITIONS,
        FOREVER,
        "Poison messages from enrichment, each with the reason.",
    ),
    TopicSpec(
        names.topic(names.PROJECTIONS_DLQ_TOPIC),
        DOMAIN_PARTITIONS,
        FOREVER,
        "Events a projection could not apply, each with the reason.",
    ),
)

DOMAIN_AGGREGATES = names.DOMAIN_AGGREGATES
DOMAIN_TOPICS: tuple[str, ...] = tuple(names.domain_topic(aggregate) for aggregate in DOMAIN_AGGREGATES)


def ensure_topics(
    admin: Any, catalogue: Iterable[TopicSpec] = CATALOGUE, replication_factor: int = 1
) -> list[str]:
    """Create the catalogue's missing topics, leaving existing ones as they are; returns the names created."""
    existing = set(admin.list_topics())
    missing = [spec for spec in catalogue if spec.name not in existing]
    if not missing:
        return []
    request = {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": replication_factor,
            "configs": spec.configs,
        }
        for spec in missing
    }
    # raise_errors=False: a topic another process created meanwhile is not a failure, any other error is.
    response = admin.create_topics(request, raise_errors=False)
    created = _check_created(response)
    if created:
        admin.wait_for_topics(created, timeout_ms=30_000)
    log.info("kafka.topics.created", topics=created)
    return created


def _check_created(response: Mapping[str, Any]) -> list[str]:
    """Names created by a CreateTopics response; raise on any error other than 'already exists'."""
    created: list[str] = []
    for topic in response["topics"]:
        error = kafka_errors.for_code(topic["error_code"])
        if error is kafka_errors.NoError:
            created.append(topic["name"])
        elif error is not kafka_errors.TopicAlreadyExistsError:
            raise error(f"creating topic {topic['name']}: {topic.get('error_message')}")
    return created
