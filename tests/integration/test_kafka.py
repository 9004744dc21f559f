"""Against the real local Kafka node (started by `./run up`): ordering per key and the topic catalogue."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from infra.adapters.kafka import ensure_topics, make_admin, make_consumer, make_producer
from infra.settings import Settings
from infra.topics import CATALOGUE, DOMAIN_TOPICS, FOREVER
from tests.support import require_services

pytestmark = pytest.mark.integration

MESSAGES = 1_000
KEYS = [f"aggregate-{n}".encode() for n in range(7)]
TEST_PARTITIONS = 3


@pytest.fixture(scope="module")
def settings() -> Settings:
    """Settings of the running node; fails (not skips) when Kafka is down, since these tests need it."""
    settings = Settings()
    require_services(settings, "kafka")
    return settings


@pytest.fixture(scope="module")
def admin(settings: Settings) -> Iterator[KafkaAdminClient]:
    client = make_admin(settings)
    yield client
    client.close()


@pytest.fixture
def fresh_topic(admin: KafkaAdminClient) -> Iterator[str]:
    """A topic of its own, deleted afterwards."""
    name = f"bazaar.test.{uuid.uuid4().hex[:12]}"
    admin.create_topics(
        {name: {"num_partitions": TEST_PARTITIONS, "replication_factor": 1}}, wait_for_metadata=True
    )
    yield name
    admin.delete_topics([name])


def _produce(settings: Settings, topic: str) -> dict[bytes, list[int]]:
    """Send MESSAGES keyed messages round-robin over KEYS; value = the key's sequence number."""
    sent: dict[bytes, list[int]] = defaultdict(list)
    producer = make_producer(settings)
    try:
        futures = []
        for n in range(MESSAGES):
            key = KEYS[n % len(KEYS)]
            sequence = len(sent[key])
            sent[key].append(sequence)
            futures.append(producer.send(topic, key=key, value=str(sequence).encode()))
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused any of them
    finally:
        producer.close(timeout=10)
    return sent


def _consume(settings: Settings, topic: str) -> tuple[dict[bytes, list[int]], dict[bytes, set[int]]]:
    """Read MESSAGES messages from the start; per key: values in arrival order, partitions seen."""
    received: dict[bytes, list[int]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    consumer = make_consumer(settings, topic, group_id=f"test-{topic}", consumer_timeout_ms=20_000)
    try:
        for count, record in enumerate(consumer, start=1):
            received[record.key].append(int(record.value))
            partitions[record.key].add(record.partition)
            if count == MESSAGES:
                break
        consumer.commit()
    finally:
        consumer.close()
    return received, partitions


def test_keyed_messages_keep_their_order_per_key(settings: Settings, fresh_topic: str) -> None:
    sent = _produce(settings, fresh_topic)
    received, partitions = _consume(settings, fresh_topic)

    assert sum(len(values) for values in received.values()) == MESSAGES
    for key in KEYS:
        assert received[key] == sent[key], f"order broken for {key!r}"
        assert len(partitions[key]) == 1, f"{key!r} spread over partitions {partitions[key]}"
    # Several keys over several partitions: the ordering check above is not a single-partition triviality.
    assert len(set().union(*partitions.values())) > 1


def test_ensure_topics_creates_the_catalogue(settings: Settings, admin: KafkaAdminClient) -> None:
    ensure_topics(settings)
    assert ensure_topics(settings) == []  # a second run creates nothing

    existing = {topic["name"]: topic for topic in admin.describe_topics([spec.name for spec in CATALOGUE])}
    for spec in CATALOGUE:
        assert spec.name in existing, f"{spec.name} missing"
        assert len(existing[spec.name]["partitions"]) == spec.partitions, spec.name

    resources = [ConfigResource(ConfigResourceType.TOPIC, spec.name, ["retention.ms"]) for spec in CATALOGUE]
    configs = admin.describe_configs(resources, config_filter="all")["topic"]
    for spec in CATALOGUE:
        assert int(configs[spec.name]["retention.ms"]["value"]) == spec.retention_ms, spec.name
    for name in DOMAIN_TOPICS:
        assert int(configs[name]["retention.ms"]["value"]) == FOREVER, name
