"""The published copy of the log: domain topics and the checkpoints topic read from offset 0, and checked.

Every domain topic is read from offset 0 to its end, exact re-sends (same aggregate, version and hash, as
a relay restart produces) dropped, each event's hash recomputed from its published JSON and compared
with its `event_hash` header and its successor's `prev_hash`, and the tree rebuilt in notification order
and checked against the heads on the checkpoints topic. Events whose schema redacts a field (a
credential hash is published as null) cannot be rehashed from Kafka: their header hash is used as is
(the signed heads still cover it) and they are counted as unverifiable, not altered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from commands.audit.chains import as_problems
from commands.audit.codec import UnreadableEvent
from commands.audit.headcheck import StoredHead, check_heads
from commands.audit.heads import leaf_of
from commands.audit.merkle import RootBuilder
from commands.audit.report import Problem, VerifyReport, unique_problems
from commands.audit.signing import key_id
from domain.chain import ChainChecker, from_envelope, hash_fields
from infra.settings import Settings
from schemas import names
from schemas.messages import TOPIC_PREFIX, header_value
from schemas.registry import REGISTRY, SchemaRegistry


@dataclass(frozen=True)
class PublishedEvent:
    """One domain event as read from Kafka, with its hash recomputed where the schema allows."""

    aggregate_id: str
    version: int
    prev_hash: str
    notification_id: int
    header_hash: str
    content_hash: str | None
    """None when the schema redacts a field: only the store can rehash the event."""
    where: str
    event_type: str
    payload: Any
    """The validated schema instance (exact schema version, not upcast)."""
    redacted: frozenset[str]


def published_hash(
    event_type: str, schema_name: str, schema_version: int, value: bytes | str,
    registry: SchemaRegistry = REGISTRY,
) -> tuple[Any, str | None]:
    """(the parsed schema instance, the event's hash recomputed from its JSON, or None if redacted)."""
    model = registry.get(schema_name, schema_version)
    parsed = model.model_validate_json(value)
    if getattr(model, "redacted_fields", frozenset()):
        return parsed, None
    return parsed, hash_fields(event_type, from_envelope(parsed.model_dump()))


def read_published(record: Any, registry: SchemaRegistry = REGISTRY) -> PublishedEvent:
    """Decode one Kafka record of a domain topic; UnreadableEvent when it is not a Bazaar event."""
    headers = record.headers
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        event_type = _required(headers, "event_type")
        schema_name = _required(headers, "schema_name")
        schema_version = int(_required(headers, "schema_version"))
        nid = int(_required(headers, "notification_id"))
        header_hash = _required(headers, "event_hash")
        parsed, content_hash = published_hash(event_type, schema_name, schema_version, record.value, registry)
    except Exception as exc:  # every unreadable record is the same finding for an auditor
        raise UnreadableEvent(f"{where}: {exc}") from exc
    agg = str(parsed.aggregate_id)
    if record.key is not None and record.key.decode(errors="replace") != agg:
        raise UnreadableEvent(f"{where}: the key {record.key!r} is not the event's aggregate id {agg}")
    redacted: frozenset[str] = getattr(parsed, "redacted_fields", frozenset())
    return PublishedEvent(agg, parsed.version, parsed.prev_hash, nid, header_hash, content_hash, where,
                          event_type, parsed, redacted)


def _required(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str:
    value = header_value(headers, name)
    if value is None:
        raise ValueError(f"missing header {name}")
    return value


def read_topics(
    settings: Settings,
    topics: Sequence[str],
    *,
    idle_timeout_s: float = 30.0,
    on_total: Callable[[int], None] | None = None,
) -> Iterator[Any]:
    """Every record of the topics from offset 0 up to their end offsets at the start of the read.

    on_total gets the number of records to expect (for progress bars), once the offsets are known.
    """
    from kafka import TopicPartition

    from infra.adapters.kafka import make_consumer

    consumer = make_consumer(settings, group_id=None, client_id="bazaar-audit", max_poll_records=5_000)
    try:
        existing = consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in existing
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        if on_total is not None:
            starts = consumer.beginning_offsets(partitions)
            on_total(sum(ends[tp] - starts[tp] for tp in partitions))
        yield from _drain(consumer, {tp: end for tp, end in ends.items() if end > 0}, idle_timeout_s)
    finally:
        consumer.close()


def _drain(consumer: Any, ends: dict[Any, int], idle_timeout_s: float) -> Iterator[Any]:
    remaining = {tp for tp, end in ends.items() if consumer.position(tp) < end}
    last_progress = time.monotonic()
    while remaining:
        batch = consumer.poll(timeout_ms=500)
        for tp, records in batch.items():
            for record in records:
                if record.offset < ends[tp]:
                    yield record
        if batch:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > idle_timeout_s:
            raise TimeoutError(f"Kafka stopped delivering before the end of {sorted(map(str, remaining))}")
        remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}


def domain_topics(prefix: str = TOPIC_PREFIX, registry: SchemaRegistry = REGISTRY) -> list[str]:
    """The domain topics under a prefix: one per aggregate of the registry's event schemas."""
    return sorted({names.topic(model.aggregate, prefix) for model in registry.event_models()})


def checkpoints_topic(prefix: str = TOPIC_PREFIX) -> str:
    """Where the relay publishes signed tree heads."""
    return names.topic(names.CHECKPOINTS_TOPIC, prefix)


def read_checkpoints(settings: Settings, prefix: str = TOPIC_PREFIX) -> list[StoredHead]:
    """The signed heads published to the checkpoints topic, one per tree size (re-sends merged)."""
    heads: dict[int, StoredHead] = {}
    conflicts: list[StoredHead] = []
    for record in read_topics(settings, [checkpoints_topic(prefix)]):
        try:
            doc = orjson.loads(record.value)
            head = StoredHead.parse(int(doc["tree_size"]), int(doc.get("last_notification_id", 0)), doc)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            conflicts.append(StoredHead(0, 0, None, f"unreadable checkpoint at offset {record.offset}: {exc}"))
            continue
        known = heads.get(head.tree_size)
        if known is not None and known.signed != head.signed:
            conflicts.append(StoredHead(head.tree_size, head.last_notification_id, None,
                                        "two different heads were published for this size"))
            continue
        heads[head.tree_size] = head
    return conflicts + [heads[size] for size in sorted(heads)]


def verify_kafka(
    settings: Settings,
    public_key: Ed25519PublicKey,
    *,
    topic_prefix: str = TOPIC_PREFIX,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    registry: SchemaRegistry = REGISTRY,
) -> VerifyReport:
    """Check the published log: chains per aggregate and the checkpoints topic's heads."""
    started = time.perf_counter()
    report = VerifyReport("kafka", key_id=key_id(public_key))
    chains = ChainChecker()
    located = published_leaves(settings, topic_prefix, report, chains, on_progress, on_total, registry)
    leaves = [(nid, leaf) for nid, leaf, _ in located]
    nids = [nid for nid, _ in leaves]
    report.problems.extend(_duplicate_notifications(nids))
    heads = read_checkpoints(settings, topic_prefix)
    roots = RootBuilder(head.tree_size for head in heads)
    roots.extend(leaf for _, leaf in leaves)
    report.problems = unique_problems(
        report.problems + as_problems(chains.finish()) + check_heads(heads, roots, nids, public_key, chains)
    )
    report.events, report.aggregates, report.heads = len(leaves), len(chains.states), len(heads)
    report.latest_head_size = max((h.signed.size for h in heads if h.signed is not None), default=0)
    report.seconds = time.perf_counter() - started
    return report


def published_leaves(
    settings: Settings,
    topic_prefix: str = TOPIC_PREFIX,
    report: VerifyReport | None = None,
    chains: ChainChecker | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    registry: SchemaRegistry = REGISTRY,
) -> list[tuple[int, bytes, str]]:
    """(notification id, leaf hash, where) of every event on the domain topics, in notification order.

    Re-sends are dropped; what does not hold (altered messages, broken chains) goes to report and chains.
    """
    report = report or VerifyReport("kafka")
    chains = chains or ChainChecker()
    seen: dict[tuple[str, int], str] = {}
    leaves: list[tuple[int, bytes, str]] = []
    count = 0
    for record in read_topics(settings, domain_topics(topic_prefix, registry), on_total=on_total):
        _check_published(record, registry, chains, seen, leaves, report)
        count += 1
        if on_progress is not None and count % 1_000 == 0:
            on_progress(1_000)
    if on_progress is not None:
        on_progress(count % 1_000)
    leaves.sort(key=lambda item: item[0])
    return leaves


def _check_published(
    record: Any, registry: SchemaRegistry, chains: ChainChecker, seen: dict[tuple[str, int], str],
    leaves: list[tuple[int, bytes, str]], report: VerifyReport,
) -> None:
    """Chain-check one published event, dropping exact re-sends."""
    try:
        event = read_published(record, registry)
    except UnreadableEvent as exc:
        report.problems.append(Problem("altered", str(exc), where=f"{record.topic}[{record.partition}]"
                                       f"@{record.offset}"))
        return
    digest = event.content_hash or event.header_hash
    known = seen.get((event.aggregate_id, event.version))
    if known == digest:
        report.duplicates_skipped += 1
        return
    if known is not None:
        detail = "two different events were published under this version"
        report.problems.append(Problem("duplicated", detail, event.aggregate_id, event.version,
                                       notification_id=event.notification_id, where=event.where))
        return
    seen[(event.aggregate_id, event.version)] = digest
    if event.content_hash is None:
        report.unverifiable += 1
    elif event.content_hash != event.header_hash:
        detail = "its published JSON no longer hashes to its event_hash header"
        report.problems.append(Problem("altered", detail, event.aggregate_id, event.version,
                                       notification_id=event.notification_id, where=event.where))
    chains.check(None, event.notification_id, event.aggregate_id, event.version, event.prev_hash, digest,
                 event.where)
    leaf = leaf_of(event.notification_id, event.aggregate_id, event.version, digest)
    leaves.append((event.notification_id, leaf, event.where))


def _duplicate_notifications(nids: Sequence[int]) -> list[Problem]:
    """Two different events published under one notification id."""
    return [
        Problem("duplicated", "two different events carry this notification id", notification_id=nid)
        for nid, following in zip(nids, nids[1:], strict=False)
        if nid == following
    ]
