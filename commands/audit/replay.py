"""`bazaar audit replay`: rebuild every aggregate from the log alone and compare it with the store's state.
(Over 400 lines: the store and Kafka replays share the rebuild and the attribute-by-attribute comparison.)

From the store: the notification log is read once in order (server-side cursor), each event decoded as
the eventsourcing mapper does and applied with the event's own `mutate`, which also checks that
versions follow each other. From Kafka: every domain topic read from offset 0, each message validated
with its exact schema version, turned back into the domain event class named by its `event_type`
header (`domain.<aggregate>:<event_type>`), re-sends dropped by (aggregate, version), and applied the
same way. Each rebuilt aggregate is then compared, public attribute by attribute, with what the
application's repository loads from the store (at the same version, for Kafka: the relay may lag).

Speed: a chained event's `mutate` computes `event_hash` for `last_hash`, which costs more than the rest
of a replay. The rebuild decodes each stored event once with orjson and hashes the decoded fields with
orjson's sorted output (what `canonical_json` writes, for the values the store holds), then runs the
rest of `mutate` and sets `last_hash` itself. The comparison folds each aggregate's last event with the
domain's full `mutate`, so a `last_hash` that differed from `event_hash` would show as a difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import resolve_topic
from psycopg import sql

from commands.audit.codec import default_mapper, fast_event_and_hash
from commands.audit.kafka_source import domain_topics, read_published, read_topics
from commands.audit.source import LogSource, read_ahead, stream_rows
from domain.chain import ChainedAggregate, from_envelope
from infra.settings import Settings
from schemas.messages import TOPIC_PREFIX
from schemas.registry import REGISTRY, SchemaRegistry

COMPARE_THREADS = 4
COMPARE_BATCH = 1_000
_CHAINED_MUTATE = ChainedAggregate.Event.mutate
_MAX_DIFFERENCES = 10_000


class StoreLoadError(str):
    """Why the store's own events of an aggregate could not be folded."""


@dataclass(frozen=True)
class Difference:
    """One way a rebuilt aggregate differs from the store's (field "<replay>": it could not be rebuilt)."""

    aggregate_id: str
    field: str
    replayed: Any
    stored: Any

    def describe(self) -> str:
        if self.field == "<replay>":
            return f"{self.aggregate_id}: could not be rebuilt from the log: {self.replayed}"
        return f"{self.aggregate_id}.{self.field}: replayed {self.replayed!r}, store has {self.stored!r}"


@dataclass
class ReplayReport:
    """What `audit replay` rebuilt and found."""

    source: Literal["store", "kafka"]
    events: int = 0
    aggregates: int = 0
    differences: list[Difference] = field(default_factory=list)
    duplicates_skipped: int = 0
    """Kafka: re-sent events dropped by (aggregate id, version)."""
    redacted: int = 0
    """Kafka: events with a redacted field; that attribute is not compared."""
    store_ahead: int = 0
    """Kafka: aggregates with newer events in the store than on Kafka (compared at Kafka's version)."""
    not_published: int = 0
    """Kafka: aggregates the store has that Kafka does not have yet."""
    rebuild_seconds: float = 0.0
    compare_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def seconds(self) -> float:
        return self.rebuild_seconds + self.compare_seconds

    @property
    def rebuild_rate(self) -> float:
        return self.events / self.rebuild_seconds if self.rebuild_seconds > 0 else 0.0

    @property
    def rate(self) -> float:
        """Events per second over the whole replay, comparison included."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "events": self.events,
            "aggregates": self.aggregates,
            "differences": [
                {"aggregate_id": d.aggregate_id, "field": d.field, "replayed": repr(d.replayed),
                 "stored": repr(d.stored)}
                for d in self.differences
            ],
            "duplicates_skipped": self.duplicates_skipped,
            "redacted": self.redacted,
            "store_ahead": self.store_ahead,
            "not_published": self.not_published,
            "rebuild_seconds": round(self.rebuild_seconds, 3),
            "compare_seconds": round(self.compare_seconds, 3),
            "events_per_second": round(self.rate, 1),
            "rebuild_events_per_second": round(self.rebuild_rate, 1),
        }


@dataclass
class Rebuilt:
    """Aggregates rebuilt from a log, the ones that could not be, and what was left out of comparison."""

    aggregates: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skip_fields: dict[str, set[str]] = field(default_factory=dict)
    events: int = 0


def apply_event(event: Any, aggregate: Any, digest: str) -> Any:
    """The event's mutate, with `last_hash` set to the already known hash of the event."""
    if type(event).mutate is _CHAINED_MUTATE:
        # ChainedAggregate.Event.mutate is super().mutate plus last_hash = event_hash(self).
        result = super(ChainedAggregate.Event, event).mutate(aggregate)
        result.last_hash = digest
        return result
    return event.mutate(aggregate)


def aggregate_state(aggregate: Any, skip: Iterable[str] = ()) -> dict[str, Any]:
    """What is compared: id, version, times and every public attribute."""
    skipped = set(skip)
    public = {k: v for k, v in vars(aggregate).items() if not k.startswith("_") and k not in skipped}
    return {
        "id": aggregate.id,
        "version": aggregate.version,
        "created_on": aggregate.created_on,
        "modified_on": aggregate.modified_on,
        **public,
    }


def differences_between(agg: str, replayed: Any, stored: Any, skip: Iterable[str] = ()) -> list[Difference]:
    """Field-by-field differences of two aggregates (a type mismatch is one difference)."""
    if type(replayed) is not type(stored):
        return [Difference(agg, "<type>", type(replayed).__qualname__, type(stored).__qualname__)]
    left, right = aggregate_state(replayed, skip), aggregate_state(stored, skip)
    return [
        Difference(agg, name, left.get(name), right.get(name))
        for name in sorted(left.keys() | right.keys())
        if left.get(name) != right.get(name)
    ]


# --- from the store ------------------------------------------------------------------------------


def rebuild_from_store(source: LogSource, *, on_progress: Callable[[int], None] | None = None) -> Rebuilt:
    """Every aggregate folded from the notification log, in order."""
    mapper = default_mapper()
    rebuilt = Rebuilt()
    aggregates, failed = rebuilt.aggregates, rebuilt.failed
    uuids: dict[str, UUID] = {}  # one UUID object per aggregate: parsing one per event costs a microsecond
    for rows in stream_rows(source):
        for nid, agg, version, topic, state in rows:
            if agg in failed:
                continue
            try:
                uuid = uuids.get(agg) or uuids.setdefault(agg, UUID(agg))
                event, digest = fast_event_and_hash(StoredEvent(uuid, version, topic, state), mapper)
                aggregates[agg] = apply_event(event, aggregates.get(agg), digest)
            except Exception as exc:  # any failure stops this aggregate, not the replay
                failed[agg] = f"version {version} (notification {nid}): {type(exc).__name__}: {exc}"
                aggregates.pop(agg, None)
        rebuilt.events += len(rows)
        if on_progress is not None:
            on_progress(len(rows))
    return rebuilt


def compare_with_store(
    source: LogSource,
    rebuilt: Rebuilt,
    *,
    versions: dict[str, int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Difference]:
    """Compare each rebuilt aggregate with the store's, loaded as the repository loads it.

    The repository selects an aggregate's events in version order and folds them with each event's
    mutate; this does the same for many aggregates per query. Only the last event of each aggregate runs
    the domain's full mutate (with `event_hash`): the ones before would only set `last_hash` for the
    next to overwrite. With snapshots on, the repository itself is asked, aggregate by aggregate.
    on_progress(advance, total) is called as aggregates are compared.
    """
    differences = [Difference(agg, "<replay>", reason, None) for agg, reason in rebuilt.failed.items()]
    reader = source.reader(pool_size=COMPARE_THREADS + 1)
    done, total = 0, len(rebuilt.aggregates)
    try:
        loaded = _repository_loads(reader, rebuilt, versions) if reader.snapshots else _batch_loads(
            source, reader, rebuilt, versions
        )
        for agg, stored in loaded:
            if stored is None or isinstance(stored, StoreLoadError):
                reason = "no such aggregate" if stored is None else f"cannot be loaded: {stored}"
                differences.append(Difference(agg, "<store>", "rebuilt", reason))
            elif len(differences) < _MAX_DIFFERENCES:
                skip = rebuilt.skip_fields.get(agg, ())
                differences.extend(differences_between(agg, rebuilt.aggregates[agg], stored, skip))
            done += 1
            if on_progress is not None and done % 100 == 0:
                on_progress(100, total)
        if on_progress is not None:
            on_progress(done % 100, total)
    finally:
        reader.close()
    return differences


def _repository_loads(
    reader: Application[UUID], rebuilt: Rebuilt, versions: dict[str, int] | None
) -> Iterator[tuple[str, Any]]:
    """(aggregate id, the repository's aggregate or None), a few loads in flight at once."""
    ids = sorted(rebuilt.aggregates)

    def load(agg: str) -> Any:
        try:
            return reader.repository.get(UUID(agg), version=versions.get(agg) if versions else None)
        except AggregateNotFoundError:
            return None
        except Exception as exc:  # the store's own events do not fold: that is the difference to show
            return StoreLoadError(f"{type(exc).__name__}: {exc}")

    # Loading waits on PostgreSQL: a few threads keep the decoding busy meanwhile.
    with ThreadPoolExecutor(COMPARE_THREADS, thread_name_prefix="audit-compare") as pool:
        yield from zip(ids, pool.map(load, ids), strict=True)


def _batch_loads(
    source: LogSource, reader: Application[UUID], rebuilt: Rebuilt, versions: dict[str, int] | None
) -> Iterator[tuple[str, Any]]:
    """(aggregate id, aggregate folded from its stored events in version order, or None), in batches."""
    query = sql.SQL(
        "SELECT originator_id::text, originator_version, topic, state FROM {}"
        " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
    ).format(source.events)
    ids = sorted(rebuilt.aggregates)
    chunks = iter(range(0, len(ids), COMPARE_BATCH))
    with source.connect() as conn:

        def fetch() -> list[tuple[list[str], list[Any]]]:
            start = next(chunks, None)
            if start is None:
                return []
            chunk = ids[start : start + COMPARE_BATCH]
            uuids = [UUID(agg) for agg in chunk]
            return [(chunk, conn.execute(query, (uuids,), binary=True).fetchall())]

        # The next batch is queried while this one is folded.
        for [(chunk, rows)] in read_ahead(fetch):
            yield from _fold_rows(reader, chunk, rows, versions)


def _fold_rows(
    reader: Application[UUID], chunk: list[str], rows: list[Any], versions: dict[str, int] | None
) -> Iterator[tuple[str, Any]]:
    """Each aggregate of the chunk folded from its rows (None when it has none)."""
    uuids: dict[str, UUID] = {}
    by_aggregate: dict[str, list[StoredEvent]] = {}
    for agg, version, topic, state in rows:
        if versions is None or version <= versions.get(agg, version):
            uuid = uuids.get(agg) or uuids.setdefault(agg, UUID(agg))
            by_aggregate.setdefault(agg, []).append(StoredEvent(uuid, version, topic, state))
    for agg in chunk:
        stored = by_aggregate.get(agg)
        try:
            yield agg, _fold(reader, stored) if stored else None
        except Exception as exc:  # the store's own events do not fold: that is the difference to show
            yield agg, StoreLoadError(f"{type(exc).__name__}: {exc}")


def _fold(reader: Application[UUID], stored: list[StoredEvent]) -> Any:
    """The aggregate as the repository projects it: each event's mutate, in version order."""
    aggregate = None
    last = len(stored) - 1
    for i, item in enumerate(stored):
        event: Any = reader.mapper.to_domain_event(item)
        if i < last and type(event).mutate is _CHAINED_MUTATE:
            aggregate = super(ChainedAggregate.Event, event).mutate(aggregate)
        else:
            aggregate = event.mutate(aggregate)
    return aggregate


def replay_store(
    source: LogSource,
    *,
    on_progress: Callable[[int], None] | None = None,
    on_compare: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Rebuild every aggregate from the stored log and compare it with the repository's."""
    started = time.perf_counter()
    rebuilt = rebuild_from_store(source, on_progress=on_progress)
    rebuilt_at = time.perf_counter()
    differences = compare_with_store(source, rebuilt, on_progress=on_compare)
    return ReplayReport(
        "store", events=rebuilt.events, aggregates=len(rebuilt.aggregates) + len(rebuilt.failed),
        differences=differences, rebuild_seconds=rebuilt_at - started,
        compare_seconds=time.perf_counter() - rebuilt_at,
    )


# --- from Kafka ----------------------------------------------------------------------------------


def domain_event_from_message(record: Any, registry: SchemaRegistry = REGISTRY) -> tuple[Any, str, frozenset[str]]:
    """(domain event, its hash, its redacted fields) rebuilt from one Kafka record of a domain topic."""
    published = read_published(record, registry)
    aggregate = getattr(published.payload, "aggregate")  # noqa: B009
    cls = resolve_topic(f"domain.{aggregate}:{published.event_type}")
    state = from_envelope(published.payload.model_dump())
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", state)
    return event, published.content_hash or published.header_hash, published.redacted


def rebuild_from_kafka(
    settings: Settings,
    *,
    topic_prefix: str = TOPIC_PREFIX,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    registry: SchemaRegistry = REGISTRY,
) -> tuple[Rebuilt, int, int]:
    """(aggregates folded from the domain topics, duplicates skipped, events with redacted fields)."""
    rebuilt = Rebuilt()
    aggregates, failed = rebuilt.aggregates, rebuilt.failed
    duplicates = redacted_count = 0
    for record in read_topics(settings, domain_topics(topic_prefix, registry), on_total=on_total):
        rebuilt.events += 1
        if on_progress is not None and rebuilt.events % 1_000 == 0:
            on_progress(1_000)
        agg = (record.key or b"").decode(errors="replace")
        if agg in failed:
            continue
        try:
            event, digest, redacted = domain_event_from_message(record, registry)
            agg = str(event.originator_id)
            current = aggregates.get(agg)
            if current is not None and event.originator_version <= current.version:
                duplicates += 1  # a relay re-send: consumers apply each version once
                continue
            aggregates[agg] = apply_event(event, current, digest)
        except Exception as exc:  # any failure stops this aggregate, not the replay
            failed[agg] = f"{record.topic}[{record.partition}]@{record.offset}: {type(exc).__name__}: {exc}"
            aggregates.pop(agg, None)
            continue
        if redacted:
            redacted_count += 1
            rebuilt.skip_fields.setdefault(agg, set()).update(redacted)
    if on_progress is not None:
        on_progress(rebuilt.events % 1_000)
    return rebuilt, duplicates, redacted_count


def store_versions(source: LogSource) -> dict[str, int]:
    """Each stored aggregate's latest version."""
    query = sql.SQL("SELECT originator_id::text, max(originator_version) FROM {} GROUP BY originator_id")
    with source.connect() as conn:
        rows = conn.execute(query.format(source.events)).fetchall()
    return {agg: int(version) for agg, version in rows}


def replay_kafka(
    source: LogSource,
    *,
    topic_prefix: str = TOPIC_PREFIX,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_compare: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Rebuild every aggregate from the Kafka topics and compare it with the store at the same version."""
    started = time.perf_counter()
    rebuilt, duplicates, redacted = rebuild_from_kafka(
        source.settings, topic_prefix=topic_prefix, on_progress=on_progress, on_total=on_total
    )
    rebuilt_at = time.perf_counter()
    stored = store_versions(source)
    versions = {agg: aggregate.version for agg, aggregate in rebuilt.aggregates.items()}
    differences = compare_with_store(source, rebuilt, versions=versions, on_progress=on_compare)
    on_kafka = rebuilt.aggregates.keys() | rebuilt.failed.keys()
    return ReplayReport(
        "kafka", events=rebuilt.events, aggregates=len(on_kafka), differences=differences,
        duplicates_skipped=duplicates, redacted=redacted,
        store_ahead=sum(1 for agg, version in versions.items() if stored.get(agg, 0) > version),
        not_published=len(stored.keys() - on_kafka),
        rebuild_seconds=rebuilt_at - started, compare_seconds=time.perf_counter() - rebuilt_at,
    )
