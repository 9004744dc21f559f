"""The enrichment worker: a consumer group on `bazaar.listing` that enriches listings in batches.

A batch is polled until it is full or old enough, decoded (poison -> DLQ), folded into the tracker, then
the listings whose latest text is not yet enriched by these model versions are enriched and sent as one
EnrichListing command each. Sending overlaps with the next batch's encoding; a batch's offsets are
committed only once all its commands were answered (or dead-lettered). After a crash the uncommitted
batches are read again and their commands re-sent with the same Idempotency-Key: nothing is appended twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from gpu_workers.client import CommandClient, Outcome, PermanentError, TransientError
from gpu_workers.embedding import MODEL_ID
from gpu_workers.enrichers import Enricher, ItemFailed
from gpu_workers.work import Tracker, WorkItem, idempotency_key, triggers_work
from schemas.base import EventSchema
from schemas.listing import EnrichListing
from schemas.messages import PoisonMessage, decode_event

log = structlog.get_logger(__name__)
WORKER_NAME = "enrichment"


@dataclass(frozen=True)
class WorkerConfig:
    """Where the worker reads and dead-letters, and how it batches."""

    source_topic: str
    dlq_topic: str
    batch_size: int
    batch_wait_s: float
    http_concurrency: int


@dataclass
class Stats:
    """Counters since start (logged per batch, read by tests and the benchmark)."""

    records: int = 0
    enriched: int = 0
    appended: int = 0
    replayed: int = 0
    skipped: int = 0
    dead_lettered: int = 0


@dataclass
class _InFlight:
    offsets: dict[TopicPartition, int]
    sends: list[tuple[WorkItem, Any, Future[Outcome]]] = field(default_factory=list)


class DeadLetters:
    """`bazaar.enrichment.dlq`: the source record (or the failed listing) with the reason in the headers."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def record(self, record: Any, reason: str) -> None:
        headers = [*(record.headers or []), *_dlq_headers(reason, record)]
        self.producer.send(self.topic, key=record.key, value=record.value or b"", headers=headers)
        log.warning("enrichment.dead_letter", reason=reason, topic=record.topic, offset=record.offset)

    def listing(self, item: WorkItem, reason: str, source: Any) -> None:
        value = json.dumps({"listing_id": str(item.listing_id), "text_version": item.text_version,
                            "reason": reason}).encode()
        self.producer.send(self.topic, key=str(item.listing_id).encode(), value=value,
                           headers=_dlq_headers(reason, source))
        log.warning("enrichment.dead_letter", reason=reason, listing_id=str(item.listing_id))

    def flush(self) -> None:
        self.producer.flush(timeout=30)


def _dlq_headers(reason: str, source: Any) -> list[tuple[str, bytes]]:
    return [("dlq_reason", reason[:2000].encode()), ("dlq_worker", WORKER_NAME.encode()),
            ("dlq_source_topic", str(source.topic).encode()),
            ("dlq_source_partition", str(source.partition).encode()),
            ("dlq_source_offset", str(source.offset).encode())]


class EnrichmentWorker:
    """One member of the enrichment consumer group."""

    def __init__(self, config: WorkerConfig, consumer: KafkaConsumer, enrichers: Sequence[Enricher],
                 client: CommandClient, dead_letters: DeadLetters) -> None:
        self.config = config
        self.consumer = consumer
        self.enrichers = list(enrichers)
        self.client = client
        self.dead_letters = dead_letters
        self.model_version = ";".join(enricher.version for enricher in self.enrichers)
        self.tracker = Tracker(self.model_version)
        self.stats = Stats()
        self._pool = ThreadPoolExecutor(max_workers=config.http_concurrency, thread_name_prefix="enrich-send")
        self._in_flight: _InFlight | None = None

    # The loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_batch: Callable[[Stats], Any] | None = None) -> None:
        """Consume until `stop` is set; then finish the batch in flight and commit it."""
        self._wait_for_topic(stop)
        self.consumer.subscribe([self.config.source_topic])
        log.info("enrichment.worker.ready", topic=self.config.source_topic, model_version=self.model_version,
                 batch_size=self.config.batch_size)
        try:
            while not stop.is_set():
                records = self.collect(stop)
                if records:
                    self.process(records)
                else:
                    self.settle()  # idle: answer the batch in flight now rather than with the next one
                if on_batch is not None:
                    on_batch(self.stats)
        finally:
            self.settle()
            self._pool.shutdown(wait=True)
            log.info("enrichment.worker.stopped", **vars(self.stats))

    def collect(self, stop: threading.Event) -> list[Any]:
        """Records until the batch is full or `batch_wait_s` passed since its first record."""
        records: list[Any] = []
        deadline: float | None = None
        while not stop.is_set() and len(records) < self.config.batch_size:
            wait_ms = 200 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            polled = self.consumer.poll(timeout_ms=wait_ms, max_records=self.config.batch_size - len(records))
            for batch in polled.values():
                records.extend(batch)
            if records and deadline is None:
                deadline = time.monotonic() + self.config.batch_wait_s
            if deadline is None and not polled:
                return records
            if deadline is not None and time.monotonic() >= deadline:
                break
        return records

    def process(self, records: Sequence[Any]) -> None:
        """Decode, plan, enrich and send one batch (its offsets commit when its sends are answered)."""
        self.stats.records += len(records)
        triggers: dict[UUID, Any] = {}
        for record in records:
            event = self._decode(record)
            if event is None:
                continue
            self.tracker.observe(event)
            if triggers_work(event):
                triggers[event.aggregate_id] = record
        items = self.tracker.pending(triggers)
        self.stats.skipped += len(triggers) - len(items)
        fields = self._enrich(items)
        self.settle()
        self._in_flight = _InFlight(_next_offsets(records))
        for item in items:
            result = fields[item.listing_id]
            if isinstance(result, ItemFailed):
                self.dead_letters.listing(item, str(result), triggers[item.listing_id])
                self.stats.dead_lettered += 1
                self.tracker.mark_enriched(item)
                continue
            command = EnrichListing(listing_id=item.listing_id, model_id=MODEL_ID,
                                    model_version=self.model_version, **result)
            key = idempotency_key(item.listing_id, item.text_version, self.model_version)
            self._in_flight.sends.append((item, triggers[item.listing_id],
                                          self._pool.submit(self.client.enrich, command, key)))
            self.tracker.mark_enriched(item)

    def settle(self) -> None:
        """Wait for the batch in flight, dead-letter its refusals, commit its offsets.

        AuthenticationError propagates: the worker stops with the batch uncommitted (redone on restart).
        """
        batch, self._in_flight = self._in_flight, None
        if batch is None:
            return
        for item, source, future in batch.sends:
            try:
                outcome = future.result()
            except (PermanentError, TransientError) as exc:
                reason = exc.reason if isinstance(exc, PermanentError) else f"retries exhausted: {exc}"
                self.dead_letters.listing(item, reason, source)
                self.stats.dead_lettered += 1
                continue
            self.stats.enriched += 1
            if outcome == "appended":
                self.stats.appended += 1
            elif outcome == "replayed":
                self.stats.replayed += 1
        self.dead_letters.flush()
        if batch.offsets:
            try:
                self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in batch.offsets.items()})
            except CommitFailedError as exc:  # a rebalance took the partitions: their new owner redoes them
                log.warning("enrichment.commit_failed", error=str(exc))
        log.info("enrichment.batch.committed", sends=len(batch.sends), **vars(self.stats))

    # Steps ------------------------------------------------------------------------------------------

    def _wait_for_topic(self, stop: threading.Event, timeout_s: float = 60.0) -> None:
        """Subscribe only once the broker knows the topic: a group joined before that gets no partitions."""
        deadline = time.monotonic() + timeout_s
        while not self.consumer.partitions_for_topic(self.config.source_topic):
            if stop.is_set() or time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.config.source_topic} does not exist (run `bazaar up`)")
            time.sleep(0.2)

    def _decode(self, record: Any) -> EventSchema | None:
        try:
            event = decode_event(record.value or b"", record.headers)
        except PoisonMessage as exc:
            self.dead_letters.record(record, exc.reason)
            self.stats.dead_lettered += 1
            return None
        if event.aggregate != "listing":
            self.dead_letters.record(record, f"{event.schema_name} is not a listing event")
            self.stats.dead_lettered += 1
            return None
        return event

    def _enrich(self, items: Sequence[WorkItem]) -> dict[UUID, dict[str, Any] | ItemFailed]:
        """Every enricher's fields merged per listing; a listing fails if any enricher failed it."""
        merged: dict[UUID, dict[str, Any] | ItemFailed] = {item.listing_id: {} for item in items}
        if not items:
            return merged
        for enricher in self.enrichers:
            try:
                results = enricher.enrich(items)
            except Exception as exc:  # noqa: BLE001 - an enricher's fault fails its batch, not the worker
                log.exception("enrichment.enricher_failed", enricher=type(enricher).__name__)
                results = {item.listing_id: ItemFailed(f"{type(exc).__name__}: {exc}") for item in items}
            for listing_id, result in results.items():
                current = merged[listing_id]
                if isinstance(current, dict):
                    merged[listing_id] = result if isinstance(result, ItemFailed) else {**current, **result}
        return merged

    def close(self) -> None:
        self.consumer.close()
        self.client.close()


def _next_offsets(records: Sequence[Any]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets
