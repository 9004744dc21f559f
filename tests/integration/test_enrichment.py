"""The enrichment worker on the real services: Kafka (its own topic prefix), PostgreSQL, the command API.

Listing events are taken from the real event store and published to the test's topics with the relay's
encoding (commands.messages.to_message); the worker's Enriched events land in the real event store and are
counted there. The model and head are the shipped ones, on CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from commands.application import Marketplace
from commands.handlers.users import register_user
from commands.messages import to_message
from gpu_workers.embedding import listing_text
from gpu_workers.runner import Models, build_worker, load_models
from gpu_workers.worker import EnrichmentWorker, Stats
from infra.adapters.kafka import make_admin, make_consumer, make_producer
from infra.settings import REPO_ROOT, Settings
from schemas.names import ENRICHMENT_DLQ_TOPIC, topic
from schemas.user import RegisterUser
from tests.support import require_services

PASSWORD = "correct horse battery staple"
TEXTS = [
    ("Road bike 56 cm", "Lightly used, serviced in May, new chain and tyres. Collection from Leeds."),
    ("Espresso machine", "Brand new and still sealed in the original box, unwanted gift."),
    ("Laptop 14 inch", "Does not power on, water damage, for parts only."),
]


@pytest.fixture(scope="module")
def world(settings: Settings, marketplace: Marketplace, api: httpx.Client) -> Iterator[dict[str, Any]]:
    """Its own topics, an admin service account for the worker and a seller, all unique to this run."""
    require_services(settings, "postgres", "kafka")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    admin = make_admin(settings)
    names = [topic("listing", prefix), topic(ENRICHMENT_DLQ_TOPIC, prefix)]
    admin.create_topics([NewTopic(name, 3, 1) for name in names])
    email = f"worker-{uuid.uuid4().hex[:8]}@example.com"
    marketplace.run(lambda: register_user(marketplace, RegisterUser(email=email, password=PASSWORD,
                                                                    display_name="Worker"), role="admin"))
    seller_email = f"seller-{uuid.uuid4().hex[:8]}@example.com"
    api.post("/users", json={"email": seller_email, "password": PASSWORD, "display_name": "S", "role": "seller"})
    token = api.post("/auth/token", json={"email": seller_email, "password": PASSWORD}).json()["access_token"]
    worker_settings = settings.model_copy(update={
        "enrichment_topic_prefix": prefix, "enrichment_account_email": email,
        "enrichment_account_password": PASSWORD,
        "enrichment_command_api_url": str(api.base_url).rstrip("/").removesuffix("/v1"),
        "enrichment_batch_size_cpu": 8, "enrichment_batch_wait_ms": 100,
    })
    producer = make_producer(settings, client_id="test-enrichment")
    yield {"settings": worker_settings, "prefix": prefix, "producer": producer,
           "seller": {"Authorization": f"Bearer {token}"}}
    producer.close()
    admin.delete_topics(names)
    admin.close()


@pytest.fixture(scope="module")
def models(settings: Settings) -> Models:
    return load_models(settings, "cpu")


def draft(api: httpx.Client, seller: dict[str, str], title: str, description: str) -> uuid.UUID:
    body = {"kind": "goods", "title": title, "description": description, "category": "sports",
            "price": {"amount": 12000, "currency": "EUR"}}
    response = api.post("/listings", json=body, headers=seller)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["aggregate_id"])


def publish_events(marketplace: Marketplace, producer: KafkaProducer, prefix: str, listing_id: uuid.UUID,
                   types: tuple[str, ...] = ("Drafted", "Revised", "Published")) -> int:
    """Send the listing's stored events of these types to the test topic, exactly as the relay encodes them."""
    sent = 0
    for event in marketplace.events.get(listing_id):
        if type(event).__name__ in types:
            message = to_message(event, event.originator_version, topic_prefix=prefix)
            producer.send(message.topic, key=message.key, value=message.value, headers=message.headers)
            sent += 1
    producer.flush(timeout=30)
    return sent


def enriched_events(settings: Settings, listing_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    with psycopg.connect(settings.pg_conninfo) as conn:
        rows = conn.execute("SELECT originator_id, count(*) FROM bazaar_events WHERE originator_id = ANY(%s)"
                            " AND topic LIKE %s GROUP BY originator_id", (listing_ids, "%Listing.Enriched")).fetchall()
    found = {row[0]: int(row[1]) for row in rows}
    return {listing_id: found.get(listing_id, 0) for listing_id in listing_ids}


def run_until(worker: EnrichmentWorker, done: Callable[[Stats], bool], timeout: float = 120.0) -> Stats:
    """Run the worker in a thread until `done(stats)` holds after a batch (or fail after `timeout`)."""
    stop, met = threading.Event(), threading.Event()

    def check(stats: Stats) -> None:
        if done(stats):
            met.set()
            stop.set()

    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"on_batch": check})
    thread.start()
    thread.join(timeout)
    stop.set()
    thread.join(30)
    worker.close()
    assert not thread.is_alive()
    assert met.is_set(), f"the worker did not get there in {timeout:.0f}s: {worker.stats}"
    return worker.stats


def test_stored_embedding_equals_direct_encode_and_echoes_are_ignored(
    world: dict[str, Any], marketplace: Marketplace, api: httpx.Client, models: Models
) -> None:
    ids = [draft(api, world["seller"], title, text) for title, text in TEXTS]
    for listing_id in ids:
        publish_events(marketplace, world["producer"], world["prefix"], listing_id)
    group = f"g-{uuid.uuid4().hex[:8]}"
    stats = run_until(build_worker(world["settings"], models, group_id=group), lambda s: s.enriched >= len(ids))
    assert stats.appended == len(ids) and stats.dead_lettered == 0
    assert enriched_events(world["settings"], ids) == dict.fromkeys(ids, 1)

    direct = models.embedder.encode([listing_text(t, d) for t, d in TEXTS], batch_size=1)
    with psycopg.connect(world["settings"].pg_conninfo) as conn:
        for listing_id, expected in zip(ids, direct, strict=True):
            event = [e for e in marketplace.events.get(listing_id) if type(e).__name__ == "Enriched"][0]
            assert "condition_head-v1@" in event.model_version and 0 <= event.condition_score <= 1
            assert event.quality_score is None or 0 <= event.quality_score <= 1
            stored = conn.execute("SELECT vector::text FROM embedding_store WHERE ref = %s",
                                  (event.embedding_ref,)).fetchone()
            assert stored is not None
            vector = np.array([float(x) for x in stored[0].strip("[]").split(",")], dtype=np.float32)
            cosine = float(vector @ expected / (np.linalg.norm(vector) * np.linalg.norm(expected)))
            assert cosine >= 0.999
    sealed, broken = (next(e for e in marketplace.events.get(i) if type(e).__name__ == "Enriched") for i in ids[1:])
    assert sealed.condition_score > broken.condition_score

    # Its own Listing.Enriched echoes, read again from the same group, cause no command at all.
    for listing_id in ids:
        publish_events(marketplace, world["producer"], world["prefix"], listing_id, ("Enriched",))
    again = run_until(build_worker(world["settings"], models, group_id=group), lambda s: s.records >= len(ids))
    assert again.records == len(ids) and again.enriched == 0 and again.skipped == 0
    assert enriched_events(world["settings"], ids) == dict.fromkeys(ids, 1)


def test_rerun_from_the_start_appends_nothing_and_revision_is_enriched_again(
    world: dict[str, Any], marketplace: Marketplace, api: httpx.Client, models: Models
) -> None:
    listing_id = draft(api, world["seller"], "Oak dining table", "Seats six, small scratch on one leg.")
    publish_events(marketplace, world["producer"], world["prefix"], listing_id)
    first = run_until(build_worker(world["settings"], models, group_id=f"g-{uuid.uuid4().hex[:8]}"),
                      lambda s: enriched_events(world["settings"], [listing_id])[listing_id] == 1)
    assert first.appended == 1
    # A fresh group reads the whole topic again: every command replays or is skipped, nothing is appended.
    size = topic_size(world["settings"], topic("listing", world["prefix"]))
    rerun = run_until(build_worker(world["settings"], models, group_id=f"g-{uuid.uuid4().hex[:8]}"),
                      lambda s: s.records >= size)
    assert rerun.records == size and rerun.appended == 0 and rerun.replayed >= 1
    assert enriched_events(world["settings"], [listing_id]) == {listing_id: 1}
    response = api.patch(f"/listings/{listing_id}", json={"description": "Seats six, refinished, like new."},
                         headers=world["seller"])
    assert response.status_code == 200, response.text
    publish_events(marketplace, world["producer"], world["prefix"], listing_id, ("Revised",))
    group = f"g-{uuid.uuid4().hex[:8]}"
    revised = run_until(build_worker(world["settings"], models, group_id=group), lambda s: s.appended >= 1)
    assert revised.appended == 1
    assert enriched_events(world["settings"], [listing_id]) == {listing_id: 2}


def test_malformed_event_goes_to_the_dlq_and_the_next_is_processed(
    world: dict[str, Any], marketplace: Marketplace, api: httpx.Client, models: Models, settings: Settings
) -> None:
    source = topic("listing", world["prefix"])
    poison_key = f"poison-{uuid.uuid4().hex[:8]}".encode()
    world["producer"].send(source, key=poison_key, value=b"{not json",
                           headers=[("schema_name", b"ListingDrafted"), ("schema_version", b"2")])
    listing_id = draft(api, world["seller"], "Cordless drill", "18 V, two batteries, works well.")
    publish_events(marketplace, world["producer"], world["prefix"], listing_id)
    stats = run_until(build_worker(world["settings"], models, group_id=f"g-{uuid.uuid4().hex[:8]}"),
                      lambda s: enriched_events(settings, [listing_id])[listing_id] == 1 and s.dead_lettered >= 1)
    assert stats.dead_lettered >= 1
    assert enriched_events(settings, [listing_id]) == {listing_id: 1}
    letters = _read_all(settings, topic(ENRICHMENT_DLQ_TOPIC, world["prefix"]))
    poison = [m for m in letters if m.key == poison_key]
    assert len(poison) == 1
    reason = dict(poison[0].headers)["dlq_reason"].decode()
    assert "ListingDrafted v2" in reason and dict(poison[0].headers)["dlq_worker"] == b"enrichment"


def test_kill_9_mid_batch_then_restart_enriches_each_listing_exactly_once(
    world: dict[str, Any], marketplace: Marketplace, api: httpx.Client, settings: Settings
) -> None:
    ids = [draft(api, world["seller"], f"Board game {n}", f"Strategy game number {n}, all pieces counted.")
           for n in range(48)]
    for listing_id in ids:
        publish_events(marketplace, world["producer"], world["prefix"], listing_id)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **_worker_env(world["settings"], group)}
    proc = _start_worker(env)
    try:
        _wait(lambda: sum(enriched_events(settings, ids).values()) >= 8, 180, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    partial = sum(enriched_events(settings, ids).values())
    assert 8 <= partial < len(ids), "the kill must land mid-stream"
    restarted = _start_worker(env)
    try:
        _wait(lambda: min(enriched_events(settings, ids).values()) >= 1, 180, restarted)
        time.sleep(2)  # anything appended twice would show now
        os.kill(restarted.pid, signal.SIGTERM)
        restarted.wait(60)
    finally:
        if restarted.poll() is None:
            os.kill(restarted.pid, signal.SIGKILL)
    assert enriched_events(settings, ids) == dict.fromkeys(ids, 1)


def _worker_env(settings: Settings, group: str) -> dict[str, str]:
    return {"BAZAAR_ENRICHMENT_TOPIC_PREFIX": settings.enrichment_topic_prefix,
            "BAZAAR_ENRICHMENT_ACCOUNT_EMAIL": settings.enrichment_account_email,
            "BAZAAR_ENRICHMENT_ACCOUNT_PASSWORD": settings.enrichment_account_password,
            "BAZAAR_ENRICHMENT_COMMAND_API_URL": settings.enrichment_command_api_url,
            "BAZAAR_ENRICHMENT_BATCH_SIZE_CPU": "8", "BAZAAR_ENRICHMENT_GROUP": group}


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "infra.cli", "workers", "enrich", "--device", "cpu"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(condition: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def topic_size(settings: Settings, name: str) -> int:
    consumer: KafkaConsumer = make_consumer(settings, group_id=None)
    partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
    size = sum(consumer.end_offsets(partitions).values())
    consumer.close()
    return int(size)


def _read_all(settings: Settings, name: str) -> list[Any]:
    consumer: KafkaConsumer = make_consumer(settings, group_id=None)
    partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    messages: list[Any] = []
    deadline = time.monotonic() + 20
    while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            messages.extend(batch)
    consumer.close()
    return messages
