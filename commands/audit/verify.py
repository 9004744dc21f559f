"""`bazaar audit verify`: every aggregate's hash chain, the Merkle tree and every signed tree head.

From the store: one pass over the events table in notification order (a server-side cursor, fetched
ahead on a thread so that PostgreSQL reads while Python hashes). Each event's hash is recomputed from
its stored JSON; every aggregate's chain is checked (versions 1..n, each `prev_hash` the hash of the
event before); the RFC 6962 tree is rebuilt from `leaf_data` of every event, and every stored head is
checked: its Ed25519 signature under the platform key, and its root against the recomputed root at
its size. Heads whose roots are recomputed from one leaf sequence are consistent with each other by
construction, so a broken consistency shows up as the first head whose root differs.

From Kafka: every domain topic read from offset 0 to its end, exact re-sends (same aggregate, version
and hash, as a relay restart produces) dropped, each event's hash recomputed from its published JSON
and compared with its `event_hash` header and its successor's `prev_hash`, and the tree rebuilt in
notification order and checked against the heads on the checkpoints topic. Events whose schema redacts
a field (a credential hash is published as null) cannot be rehashed from Kafka: their header hash is
used as is (the signed heads still cover it) and they are counted as unverifiable, not altered.

Fast path. The stored JSON is parsed with orjson and rehashed with orjson's sorted output, which gives
the bytes of `domain.chain.canonical_json` for everything the store writes (strings, integers, floats
printed without an exponent, eventsourcing's datetime and UUID encodings). Anything else (a float that
Python would print with an exponent, an unknown encoding, a class-versioned event) goes through the
eventsourcing mapper and `domain.chain.event_hash`. The fast path is at least as strict as the mapper:
it also reports stored keys that the event class does not declare.

The first problem reported is the earliest in notification order: altered, missing, duplicated or
reordered events by aggregate, version and log position; then heads (bad-signature, root-mismatch).
The chain cannot see a change to an aggregate's last event: the first head whose root differs catches
it, and the report narrows it to the events between the last good head and that one that no later
event links to.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import orjson
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.application import Application
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import resolve_topic
from psycopg import sql

from commands.audit.heads import HEADS_TABLE, leaf_data
from commands.audit.merkle import AuditError, leaf_hash, node_hash
from commands.audit.signing import SignedTreeHead, key_id, verify_tree_head
from commands.store import EVENTS_TABLE, eventsourcing_env
from domain.chain import GENESIS_HASH, event_hash, from_envelope, hash_fields
from infra.settings import Settings
from schemas import names
from schemas.messages import TOPIC_PREFIX, header_value
from schemas.registry import REGISTRY, SchemaRegistry

ProblemKind = Literal["altered", "missing", "duplicated", "reordered", "bad-signature", "root-mismatch"]
Row = tuple[int, str, int, str, bytes]
"""(notification_id, aggregate id as text, version, topic, state) of one stored event."""

FETCH_ROWS = 10_000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
# orjson prints floats like Python's repr except where repr switches to an exponent.
_FLOAT_PLAIN_MIN, _FLOAT_PLAIN_MAX = 1e-4, 1e16
# orjson reads integers beyond 64 bits as floats; the mapper (json) keeps them exact.
_FLOAT_EXACT_INT = 2.0**63
_MAX_LISTED = 5
_PLAIN = frozenset({str, int, bool, type(None)})


class UnreadableEvent(AuditError):
    """A stored or published event that cannot be decoded into a hashable event."""


class _Fallback(Exception):
    """The fast path does not cover this event: use the mapper."""


# --- where the log lives ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogSource:
    """The event log in PostgreSQL: database (from settings), schema and events table."""

    settings: Settings
    schema: str = "public"
    table: str = EVENTS_TABLE

    def __post_init__(self) -> None:
        for name in (self.schema, self.table):
            if not _NAME.fullmatch(name):
                raise ValueError(f"not a plain SQL identifier: {name!r}")
        if not self.table.endswith("_events"):
            raise ValueError("an eventsourcing events table is named <application>_events")

    @property
    def events(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def heads_table(self) -> sql.Identifier:
        return sql.Identifier(self.schema, HEADS_TABLE)

    def connect(self) -> psycopg.Connection[Any]:
        """A connection whose search_path is the log's schema (where HeadStore keeps the heads)."""
        return psycopg.connect(self.settings.pg_conninfo, options=f"-c search_path={self.schema}")

    def count(self) -> int:
        """How many events the table holds (for progress bars)."""
        with self.connect() as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.events)).fetchone()
        return int(row[0]) if row else 0

    def reader(self, pool_size: int = 2) -> Application[UUID]:
        """A read-only eventsourcing Application over the table: the store's mapper and repository."""
        from commands.application import Marketplace

        name = self.table.removesuffix("_events")
        settings = self.settings.model_copy(update={"pg_pool_size": pool_size})
        env = {**eventsourcing_env(settings), "POSTGRES_SCHEMA": self.schema, "CREATE_TABLE": "n"}
        # Loading each aggregate once to compare it gains nothing from a cache.
        env["AGGREGATE_CACHE_MAXSIZE"] = ""
        cls = type(
            "BazaarLogReader",
            (Application,),
            {
                "name": name,
                "register_transcodings": Marketplace.register_transcodings,
                "construct_mapper": _construct_fast_mapper,
            },
        )
        app: Application[UUID] = cls(env=env)
        return app


def _construct_fast_mapper(app: Application[UUID]) -> Mapper[UUID]:
    return FastMapper(transcoder=app.construct_transcoder())


def stream_rows(
    source: LogSource, *, after: int = 0, until: int | None = None, fetch: int = FETCH_ROWS
) -> Iterator[list[Row]]:
    """Batches of stored events in notification order (after < id <= until), read one batch ahead."""
    query = sql.SQL(
        "SELECT notification_id, originator_id::text, originator_version, topic, state"
        " FROM {} WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id"
    ).format(source.events)
    with source.connect() as conn, conn.cursor(name="bazaar_audit_scan", binary=True) as cursor:
        cursor.itersize = fetch
        cursor.execute(query, (after, until if until is not None else 2**63 - 1))
        yield from read_ahead(lambda: cursor.fetchmany(fetch))


def read_ahead(fetch: Callable[[], list[Any]]) -> Iterator[list[Any]]:
    """Yield fetch() results until one is empty, fetching the next on a thread meanwhile.

    psycopg waits for the server without the GIL, so PostgreSQL produces the next batch while the
    caller hashes this one.
    """
    batches: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                batch = fetch()
                _put(batches, batch, stop)
                if not batch:
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            _put(batches, exc, stop)

    worker = threading.Thread(target=produce, name="audit-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = batches.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            with suppress(queue.Empty):
                batches.get(timeout=0.05)
        worker.join()


def _put(batches: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            batches.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


# --- hashing stored events ------------------------------------------------------------------------


def default_mapper() -> Mapper[UUID]:
    """The mapper the store writes with: JSON and the transcodings of eventsourcing's Application.

    Marketplace registers no others (a test checks), so this needs no database and no application.
    """
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


class StoredHasher:
    """Recomputes `event_hash` of stored events from their rows: orjson where exact, the mapper otherwise."""

    def __init__(self, mapper: Mapper[UUID] | None = None) -> None:
        self.mapper = mapper or default_mapper()
        self.type_names: dict[str, str] = _TypeNames()
        """topic -> the hashed type name (the event class's qualname)."""
        self.fallbacks = 0

    def __call__(self, aggregate_id: str, version: int, topic: str, state: bytes) -> tuple[str, str]:
        """(hash, prev_hash) of one stored event; UnreadableEvent when it cannot be decoded."""
        try:
            fields = orjson.loads(state)
            if type(fields) is not dict or "type" in fields or "class_version" in fields:
                raise _Fallback
            _to_canonical(fields)
            prev = fields["prev_hash"]
            fields["originator_id"] = aggregate_id
            fields["originator_version"] = version
            fields["type"] = self.type_names[topic]
            if type(prev) is not str:
                raise _Fallback
            return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest(), prev
        except (_Fallback, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return self.reference(aggregate_id, version, topic, state)

    def reference(self, aggregate_id: str, version: int, topic: str, state: bytes) -> tuple[str, str]:
        """(hash, prev_hash) through the eventsourcing mapper and `domain.chain.event_hash`."""
        self.fallbacks += 1
        try:
            event = self.mapper.to_domain_event(StoredEvent(UUID(aggregate_id), version, topic, state))
            prev = event.prev_hash  # type: ignore[attr-defined]
            if not isinstance(prev, str):
                raise TypeError("prev_hash is not a string")
            digest = event_hash(event)
        except Exception as exc:  # any reason an event does not decode means its bytes were changed
            raise UnreadableEvent(f"cannot decode the stored event: {exc}") from exc
        return digest, prev


class _TypeNames(dict[str, str]):
    """topic -> the qualname of the class it names, resolved on first use."""

    def __missing__(self, topic: str) -> str:
        try:
            name: str = resolve_topic(topic).__qualname__
        except Exception as exc:  # an unknown topic: the mapper will say why the event is unreadable
            raise _Fallback from exc
        self[topic] = name
        return name


def _to_canonical(value: dict[str, Any] | list[Any]) -> None:
    """Replace eventsourcing's datetime and UUID encodings by their canonical text, in place."""
    items = value.items() if type(value) is dict else enumerate(value)
    for key, item in items:
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind is dict:
            if len(item) == 2 and "_type_" in item and "_data_" in item:
                value[key] = _canonical_transcoded(item["_type_"], item["_data_"])  # type: ignore[index]
            else:
                _to_canonical(item)
        elif kind is list:
            _to_canonical(item)
        elif kind is float:
            if item != 0.0 and not _FLOAT_PLAIN_MIN <= abs(item) < _FLOAT_PLAIN_MAX:
                raise _Fallback
        else:
            raise _Fallback


def _canonical_transcoded(name: object, data: object) -> str:
    """The canonical text of one transcoded value: what `canonical_json` writes for the decoded object."""
    if type(data) is not str:
        raise _Fallback
    if name == "datetime_iso":
        # isoformat() round-trips, so the stored text is the canonical text.
        return data
    if name == "uuid_hex" and _HEX32.fullmatch(data):
        return f"{data[:8]}-{data[8:12]}-{data[12:16]}-{data[16:20]}-{data[20:]}"
    raise _Fallback


# --- decoding stored events into domain objects (replay, repository reads) ------------------------


class FastMapper(Mapper[UUID]):
    """eventsourcing's mapper with an orjson decoding path that builds the same objects."""

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        try:
            return fast_domain_event(stored_event)
        except (_Fallback, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return super().to_domain_event(stored_event)


def fast_domain_event(stored: StoredEvent, *, hashable: bool = False) -> Any:
    """Decode a stored event as the mapper does (JSON transcoder, no cipher or compression).

    hashable: also refuse (with _Fallback) what orjson would not print as `canonical_json` does.
    """
    cls = resolve_topic(stored.topic)
    state = orjson.loads(stored.state)
    if type(state) is not dict or "class_version" in state or (hashable and "type" in state):
        raise _Fallback
    _to_objects(state, _FLOAT_PLAIN_MIN if hashable else 0.0, _FLOAT_PLAIN_MAX if hashable else _FLOAT_EXACT_INT)
    originator_id = stored.originator_id
    state["originator_id"] = originator_id if type(originator_id) is UUID else UUID(str(originator_id))
    state["originator_version"] = stored.originator_version
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", state)
    return event


def _to_objects(value: dict[str, Any] | list[Any], low: float, high: float) -> None:
    """Replace eventsourcing's encodings by the objects the transcoder makes, in place.

    Floats outside [low, high) raise _Fallback: orjson reads integers beyond 64 bits as floats, and
    prints floats with an exponent unlike Python.
    """
    items = value.items() if type(value) is dict else enumerate(value)
    for key, item in items:
        kind = type(item)
        if kind is dict:
            if len(item) == 2 and "_type_" in item and "_data_" in item:
                value[key] = _transcoded_object(item["_type_"], item["_data_"])  # type: ignore[index]
            else:
                _to_objects(item, low, high)
        elif kind is list:
            _to_objects(item, low, high)
        elif kind is float and item != 0.0 and not low <= abs(item) < high:
            raise _Fallback


def fast_event_and_hash(stored: StoredEvent, mapper: Mapper[UUID]) -> tuple[Any, str]:
    """A stored event decoded as the mapper does, and its `event_hash`, from one parse.

    orjson prints UUIDs as str() and datetimes as isoformat() do, so its sorted output of the decoded
    fields is `canonical_json`; anything the fast path refuses goes through the mapper and event_hash.
    """
    try:
        event = fast_domain_event(stored, hashable=True)
        fields = dict(event.__dict__)
        fields["type"] = type(event).__qualname__
        return event, hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
    except (_Fallback, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        try:
            event = mapper.to_domain_event(stored)
            return event, event_hash(event)
        except Exception as exc:  # any reason an event does not decode means its bytes were changed
            raise UnreadableEvent(f"cannot decode the stored event: {exc}") from exc


def _transcoded_object(name: object, data: object) -> Any:
    if type(data) is not str:
        raise _Fallback
    if name == "datetime_iso":
        return datetime.fromisoformat(data)
    if name == "uuid_hex":
        return UUID(data)
    if name == "decimal_str":
        return Decimal(data)
    raise _Fallback


# --- problems and the report ----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing that does not hold, located as precisely as the evidence allows."""

    kind: ProblemKind
    detail: str
    aggregate_id: str | None = None
    version: int | None = None
    position: int | None = None
    """0-based place in notification order (the Merkle leaf index); None where unknown (Kafka)."""
    notification_id: int | None = None
    head_size: int | None = None
    where: str | None = None
    """Where it was read, for Kafka: topic[partition]@offset."""

    def describe(self) -> str:
        """One line for people: kind, then what and where."""
        parts: list[str] = [self.kind]
        if self.aggregate_id is not None:
            parts.append(f"aggregate {self.aggregate_id} version {self.version}")
        if self.position is not None:
            parts.append(f"position {self.position}")
        if self.notification_id is not None:
            parts.append(f"notification {self.notification_id}")
        if self.head_size is not None:
            parts.append(f"head size {self.head_size}")
        if self.where:
            parts.append(self.where)
        return f"{' · '.join(parts)}: {self.detail}"

    def sort_key(self) -> tuple[int, int, int]:
        """Event problems in log order first, then heads by size."""
        if self.head_size is not None and self.aggregate_id is None:
            return (1, self.head_size, 0)
        order = self.notification_id if self.notification_id is not None else self.position or 0
        return (0, order, self.version or 0)


@dataclass
class VerifyReport:
    """What `audit verify` found."""

    source: Literal["store", "kafka"]
    events: int = 0
    aggregates: int = 0
    heads: int = 0
    latest_head_size: int = 0
    problems: list[Problem] = field(default_factory=list)
    unverifiable: int = 0
    """Kafka: events whose schema redacts a field, so that only the store can rehash them."""
    duplicates_skipped: int = 0
    """Kafka: exact re-sends of an event (same aggregate, version and hash) left out."""
    fallbacks: int = 0
    seconds: float = 0.0
    key_id: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def unsigned_tail(self) -> int:
        """Events after the latest signed head: protected by their chains only, for now."""
        return max(0, self.events - self.latest_head_size)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ok"] = self.ok
        doc["first_problem"] = asdict(self.first) if self.first else None
        doc["events_per_second"] = round(self.rate, 1)
        return doc


def unique_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in report order, each event's finding once (Kafka may see one change twice)."""
    seen: set[tuple[Any, ...]] = set()
    unique = []
    for problem in sorted(problems, key=Problem.sort_key):
        key = (problem.kind, problem.aggregate_id, problem.version) if problem.aggregate_id else (id(problem),)
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return unique


# --- hash chains ----------------------------------------------------------------------------------

_BROKEN = -1
_PENDING = "pending"


@dataclass(frozen=True)
class _Gap:
    expected: int
    seen: int
    position: int | None
    notification_id: int
    where: str | None


@dataclass(frozen=True)
class _Link:
    """A prev_hash that did not match: which event changed is known only at the next event."""

    version: int
    position: int | None
    notification_id: int
    prev_position: int | None
    prev_notification_id: int
    expected_prev: str
    hash: str
    where: str | None


class ChainChecker:
    """Checks every aggregate's chain over events given in log order; keeps the first break of each.

    `states[aggregate]` is [next version, hash of the last event, its position, its notification id];
    the next version is `_BROKEN` once the aggregate's chain has a reported break.
    """

    def __init__(self) -> None:
        self.states: dict[str, list[Any]] = {}
        self.problems: list[Problem] = []
        self._gaps: dict[str, _Gap] = {}
        self._links: dict[str, _Link] = {}

    def check(
        self, position: int | None, nid: int, agg: str, version: int, prev: str, digest: str,
        where: str | None = None,
    ) -> None:
        """Check one event against its aggregate's chain so far."""
        state = self.states.get(agg)
        if state is not None and state[0] == version and state[1] == prev:
            state[0], state[1], state[2], state[3] = version + 1, digest, position, nid
        elif state is None and version == 1 and prev == GENESIS_HASH:
            self.states[agg] = [2, digest, position, nid]
        else:
            self.anomaly(state, position, nid, agg, version, prev, digest, where)

    def unreadable(self, position: int | None, nid: int, agg: str, version: int, detail: str,
                   where: str | None = None) -> None:
        """An event that does not decode: it was altered, and its aggregate's chain stops here."""
        self.problems.append(Problem("altered", detail, agg, version, position, nid, where=where))
        state = self.states.setdefault(agg, [1, GENESIS_HASH, position, nid])
        self._break(state, position, nid)

    def anomaly(
        self, state: list[Any] | None, position: int | None, nid: int, agg: str, version: int,
        prev: str, digest: str, where: str | None = None,
    ) -> None:
        """Everything but the next event of a sound chain."""
        if state is None:
            state = self.states[agg] = [1, GENESIS_HASH, None, 0]
        link = self._links.pop(agg, None)
        if link is not None:
            self._resolve_link(agg, link, version, prev)
            self._break(state, position, nid)
            return
        if state[0] == _BROKEN:
            self._watch_gap(agg, version, position, nid, where)
            state[2], state[3] = position, nid
            return
        expected = state[0]
        if version == expected:
            self._links[agg] = _Link(version, position, nid, state[2], state[3], state[1], digest, where)
            state[0], state[1], state[2], state[3] = version + 1, _PENDING, position, nid
            return
        if version > expected:
            self._gaps[agg] = _Gap(expected, version, position, nid, where)
        else:
            detail = f"version {version} appears again after version {expected - 1}"
            self.problems.append(Problem("duplicated", detail, agg, version, position, nid, where=where))
        self._break(state, position, nid)

    def _break(self, state: list[Any], position: int | None, nid: int) -> None:
        state[0], state[1], state[2], state[3] = _BROKEN, _PENDING, position, nid

    def _watch_gap(self, agg: str, version: int, position: int | None, nid: int, where: str | None) -> None:
        gap = self._gaps.get(agg)
        if gap is not None and version == gap.expected:
            del self._gaps[agg]
            detail = (
                f"version {gap.seen} comes before version {gap.expected} in the log "
                f"(version {gap.expected} is at notification {nid})"
            )
            self.problems.append(
                Problem("reordered", detail, agg, gap.expected, gap.position, gap.notification_id,
                        where=gap.where)
            )

    def _resolve_link(self, agg: str, link: _Link, version: int | None, prev: str | None) -> None:
        k = link.version
        if version == k + 1 and prev == link.expected_prev:
            detail = f"versions {k} and {k + 1} hold each other's events (version {k + 1} links to {k - 1})"
            self.problems.append(
                Problem("reordered", detail, agg, k, link.position, link.notification_id, where=link.where)
            )
            return
        if version == k + 1 and prev != link.hash:
            # Both links around k are broken: k itself (its prev_hash or content) was changed.
            detail = f"its hash and its prev_hash both disagree with the chain (versions {k - 1} and {k + 1})"
            self.problems.append(
                Problem("altered", detail, agg, k, link.position, link.notification_id, where=link.where)
            )
            return
        self.problems.append(self._predecessor_altered(agg, link, certain=version == k + 1))

    def _predecessor_altered(self, agg: str, link: _Link, *, certain: bool) -> Problem:
        k = link.version
        if k == 1:
            return Problem("altered", "the first event's prev_hash is not the genesis hash", agg, 1,
                           link.position, link.notification_id, where=link.where)
        detail = f"its hash no longer matches the prev_hash recorded by version {k}"
        if not certain:
            detail += f" (or version {k}'s own prev_hash was changed: nothing follows it)"
        return Problem("altered", detail, agg, k - 1, link.prev_position, link.prev_notification_id,
                       where=link.where)

    def finish(self) -> list[Problem]:
        """Resolve what only the end of the log decides; the problems found, in log order."""
        for agg, link in self._links.items():
            self.problems.append(self._predecessor_altered(agg, link, certain=False))
        self._links.clear()
        for agg, gap in self._gaps.items():
            detail = f"version {gap.expected} is absent (version {gap.seen} follows version {gap.expected - 1})"
            self.problems.append(
                Problem("missing", detail, agg, gap.expected, gap.position, gap.notification_id,
                        where=gap.where)
            )
        self._gaps.clear()
        self.problems.sort(key=Problem.sort_key)
        return self.problems

    def last_events_between(self, low: int, high: int) -> list[tuple[str, int, int, int]]:
        """(aggregate, version, position, notification id) of sound chains whose last event is in [low, high)."""
        found = []
        for agg, (next_version, _, position, nid) in self.states.items():
            if next_version != _BROKEN and position is not None and low <= position < high:
                found.append((agg, next_version - 1, position, nid))
        return sorted(found, key=lambda item: item[2])


# --- the Merkle tree -----------------------------------------------------------------------------


class RootBuilder:
    """RFC 6962 roots of a growing leaf sequence at chosen sizes, keeping only the tree's right edge."""

    def __init__(self, sizes: Iterable[int] = ()) -> None:
        self.size = 0
        self.roots: dict[int, bytes] = {}
        self._stack: list[bytes] = []
        self._wanted = sorted({size for size in sizes if size > 0}, reverse=True)
        self._next = self._wanted.pop() if self._wanted else -1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append leaf hashes in order, recording the root at every wanted size."""
        stack, size, wanted = self._stack, self.size, self._next
        sha = hashlib.sha256
        for leaf in leaves:
            node, n = leaf, size
            # Each trailing 1 bit of the old size is a perfect subtree that this leaf completes.
            while n & 1:
                node = sha(b"\x01" + stack.pop() + node).digest()
                n >>= 1
            stack.append(node)
            size += 1
            if size == wanted:
                self.size = size
                self.roots[size] = self.root()
                wanted = self._next = self._wanted.pop() if self._wanted else -1
        self.size = size

    def root(self) -> bytes:
        """The root at the current size: the perfect subtrees folded from the right."""
        if not self._stack:
            return hashlib.sha256(b"").digest()
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def leaf_of(nid: int, agg: str, version: int, digest: str) -> bytes:
    """The Merkle leaf hash of one event."""
    return leaf_hash(leaf_data(nid, agg, version, digest))


# --- signed heads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredHead:
    """A signed tree head as kept (table row or checkpoint message); `signed` is None when unreadable."""

    tree_size: int
    last_notification_id: int
    signed: SignedTreeHead | None
    error: str = ""

    @classmethod
    def parse(cls, tree_size: int, last_notification_id: int, doc: Any) -> StoredHead:
        try:
            return cls(tree_size, last_notification_id, SignedTreeHead.from_dict(doc))
        except (AuditError, TypeError, ValueError) as exc:
            return cls(tree_size, last_notification_id, None, str(exc))


def read_heads(source: LogSource) -> list[StoredHead]:
    """Every stored signed head, by size; none when the relay has not created its table yet."""
    with source.connect() as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f"{source.schema}.{HEADS_TABLE}",)).fetchone()
        if row is None or row[0] is None:
            return []
        rows = conn.execute(
            sql.SQL("SELECT tree_size, last_notification_id, head FROM {} ORDER BY tree_size").format(
                source.heads_table
            )
        ).fetchall()
    return [StoredHead.parse(int(size), int(last), head) for size, last, head in rows]


def check_heads(
    heads: Sequence[StoredHead],
    roots: RootBuilder,
    notification_ids: Sequence[int],
    public_key: Ed25519PublicKey,
    chains: ChainChecker,
) -> list[Problem]:
    """Signature, size and root of every head; the first root mismatch narrowed down to a leaf range."""
    problems: list[Problem] = []
    good_size, mismatches = 0, 0
    for head in heads:
        problem = _head_signature_problem(head, public_key)
        if problem is not None:
            problems.append(problem)
            continue
        assert head.signed is not None
        size = head.signed.size
        if size > roots.size:
            detail = f"a head signs {size} events but the log holds {roots.size}: the last {size - roots.size} are gone"
            problems.append(Problem("missing", detail, position=roots.size, head_size=size))
            continue
        if roots.roots.get(size) == head.signed.root_hash:
            good_size = size
            continue
        mismatches += 1
        if mismatches == 1:
            problems.append(_root_mismatch(head, good_size, notification_ids, chains))
    if mismatches > 1:
        problems.append(
            Problem("root-mismatch", f"{mismatches - 1} later head(s) differ too, as they extend the first",
                    head_size=max(h.tree_size for h in heads))
        )
    return problems


def _head_signature_problem(head: StoredHead, public_key: Ed25519PublicKey) -> Problem | None:
    if head.signed is None:
        return Problem("bad-signature", f"unreadable head document: {head.error}", head_size=head.tree_size)
    try:
        verify_tree_head(public_key, head.signed)
    except AuditError as exc:
        return Problem("bad-signature", f"{exc} (key {head.signed.head.key_id})", head_size=head.tree_size)
    if head.signed.size != head.tree_size:
        return Problem("bad-signature", f"stored as size {head.tree_size} but signed for size {head.signed.size}",
                       head_size=head.tree_size)
    return None


def _root_mismatch(
    head: StoredHead, good_size: int, notification_ids: Sequence[int], chains: ChainChecker
) -> Problem:
    """Explain a head whose root the log no longer gives: missing, inserted or altered leaves in a range."""
    assert head.signed is not None
    size = head.signed.size
    span = f"positions {good_size}..{size - 1}"
    covered = bisect_right(notification_ids, head.last_notification_id)
    if covered < size:
        detail = (f"{size - covered} event(s) up to notification {head.last_notification_id} that this head "
                  f"covers are gone, between {span}")
        return Problem("missing", detail, position=good_size, head_size=size)
    if covered > size:
        detail = (f"{covered - size} event(s) up to notification {head.last_notification_id} were added "
                  f"after this head was signed, between {span}")
        return Problem("root-mismatch", detail, position=good_size, head_size=size)
    candidates = chains.last_events_between(good_size, size)
    base = f"the log no longer gives this head's root: the first changed leaf is in {span}"
    if good_size:
        base += f" (the head at size {good_size} still matches)"
    if len(candidates) == 1:
        agg, version, position, nid = candidates[0]
        detail = (f"{base}; the only event there that no later event links to is this one, so it was altered "
                  "(or notification ids were renumbered)")
        return Problem("root-mismatch", detail, agg, version, position, nid, head_size=size)
    listed = ", ".join(f"{agg} v{version} (position {pos})" for agg, version, pos, _ in candidates[:_MAX_LISTED])
    more = f" and {len(candidates) - _MAX_LISTED} more" if len(candidates) > _MAX_LISTED else ""
    detail = f"{base}; events there that no later event links to: {listed or 'none'}{more}"
    return Problem("root-mismatch", detail, position=good_size, head_size=size)


# --- verify from the store ------------------------------------------------------------------------


def verify_store(
    source: LogSource,
    public_key: Ed25519PublicKey,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every stored event's chain and every stored head (see the module docstring)."""
    started = time.perf_counter()
    report = _verify_one_pass(source, public_key, read_heads(source), on_progress)
    report.seconds = time.perf_counter() - started
    return report


def _verify_one_pass(
    source: LogSource,
    public_key: Ed25519PublicKey,
    heads: list[StoredHead],
    on_progress: Callable[[int], None] | None,
) -> VerifyReport:
    """One ordered pass over the log that locates every problem."""
    hasher = StoredHasher()
    chains = ChainChecker()
    roots = RootBuilder(head.tree_size for head in heads)
    nids: array[int] = array("q")
    position = 0
    for rows in stream_rows(source):
        leaves = _check_rows(rows, position, hasher, chains)
        roots.extend(leaves)
        nids.extend(row[0] for row in rows)
        position += len(rows)
        if on_progress is not None:
            on_progress(len(rows))
    problems = unique_problems(chains.finish() + check_heads(heads, roots, nids, public_key, chains))
    latest = max((h.signed.size for h in heads if h.signed is not None), default=0)
    return VerifyReport(
        "store", events=position, aggregates=len(chains.states), heads=len(heads), latest_head_size=latest,
        problems=problems, fallbacks=hasher.fallbacks, key_id=key_id(public_key),
    )


def _check_rows(rows: list[Row], position: int, hasher: StoredHasher, chains: ChainChecker) -> list[bytes]:
    """Hash, chain-check and make the leaf of each row: the hot loop of verify.

    It inlines `StoredHasher.__call__` (the same steps), as a call per event costs a tenth of the time.
    """
    states, anomaly, type_names = chains.states, chains.anomaly, hasher.type_names
    sha, loads, dumps, sort_keys = hashlib.sha256, orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
    leaves: list[bytes] = []
    append = leaves.append
    for nid, agg, version, topic, state in rows:
        try:
            fields = loads(state)
            if type(fields) is not dict or "type" in fields or "class_version" in fields:
                raise _Fallback
            _to_canonical(fields)
            prev = fields["prev_hash"]
            fields["originator_id"] = agg
            fields["originator_version"] = version
            fields["type"] = type_names[topic]
            if type(prev) is not str:
                raise _Fallback
            digest = sha(dumps(fields, option=sort_keys)).hexdigest()
        except (_Fallback, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            try:
                digest, prev = hasher.reference(agg, version, topic, state)
            except UnreadableEvent as exc:
                chains.unreadable(position, nid, agg, version, str(exc))
                append(sha(f"\x00{nid}:{agg}:{version}:{sha(state).hexdigest()}".encode()).digest())
                position += 1
                continue
        current = states.get(agg)
        if current is not None and current[0] == version and current[1] == prev:
            current[0], current[1], current[2], current[3] = version + 1, digest, position, nid
        elif current is None and version == 1 and prev == GENESIS_HASH:
            states[agg] = [2, digest, position, nid]
        else:
            anomaly(current, position, nid, agg, version, prev, digest)
        # leaf_of() inlined: this loop is the verifier's whole cost per event.
        append(sha(f"\x00{nid}:{agg}:{version}:{digest}".encode()).digest())
        position += 1
    return leaves


# --- verify from Kafka ----------------------------------------------------------------------------


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
    seen: dict[tuple[str, int], str] = {}
    leaves: list[tuple[int, bytes]] = []
    count = 0
    for record in read_topics(settings, domain_topics(topic_prefix, registry), on_total=on_total):
        _check_published(record, registry, chains, seen, leaves, report)
        count += 1
        if on_progress is not None and count % 1_000 == 0:
            on_progress(1_000)
    if on_progress is not None:
        on_progress(count % 1_000)
    leaves.sort(key=lambda item: item[0])
    nids = [nid for nid, _ in leaves]
    report.problems.extend(_duplicate_notifications(nids))
    heads = read_checkpoints(settings, topic_prefix)
    roots = RootBuilder(head.tree_size for head in heads)
    roots.extend(leaf for _, leaf in leaves)
    report.problems = unique_problems(
        report.problems + chains.finish() + check_heads(heads, roots, nids, public_key, chains)
    )
    report.events, report.aggregates, report.heads = len(leaves), len(chains.states), len(heads)
    report.latest_head_size = max((h.signed.size for h in heads if h.signed is not None), default=0)
    report.seconds = time.perf_counter() - started
    return report


def _check_published(
    record: Any, registry: SchemaRegistry, chains: ChainChecker, seen: dict[tuple[str, int], str],
    leaves: list[tuple[int, bytes]], report: VerifyReport,
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
    leaves.append((event.notification_id, leaf_of(event.notification_id, event.aggregate_id, event.version,
                                                  digest)))


def _duplicate_notifications(nids: Sequence[int]) -> list[Problem]:
    """Two different events published under one notification id."""
    return [
        Problem("duplicated", "two different events carry this notification id", notification_id=nid)
        for nid, following in zip(nids, nids[1:], strict=False)
        if nid == following
    ]
