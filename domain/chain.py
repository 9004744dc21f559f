"""Tamper evidence: every event carries the hash of its aggregate's previous event.

`event_hash(event)` is the SHA-256 (lowercase hex) of the canonical JSON of
`{"type": <event class qualname, e.g. "Listing.Published">, <every dataclass field of the event>}`
(fields include originator_id, originator_version, timestamp, prev_hash and, for created events,
originator_topic). Canonical JSON: keys sorted, separators (",", ":"), UTF-8 (ensure_ascii=False),
UUID -> str, datetime -> isoformat(), tuple -> list, finite floats as Python's repr, Decimal/NaN refused.
An auditor recomputes it from a decoded stored event alone (`hash_fields` works on plain dicts too);
the type name is the part after ":" of the stored topic. The first event links to `GENESIS_HASH`.

The chain only protects events that have a successor: altering an aggregate's last event is caught by
the log-wide Merkle checkpoints, not here. `ChainChecker` is the one chain check: `verify_chain` runs it
over domain events, `bazaar audit verify` over stored rows and Kafka messages. Stored chained events
are never upcast in place (that would change their hash); schema upcasters work on the published JSON
instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

GENESIS_HASH = "0" * 64
"""The `prev_hash` of every aggregate's first event."""

BreakReason = Literal["altered", "missing", "duplicated", "reordered"]

_A = TypeVar("_A", bound="ChainedAggregate")


def _canonical(value: Any) -> Any:
    """Turn a value into plain JSON types, refusing those without one exact text form."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError("non-finite float has no canonical form")
        return value
    if isinstance(value, Decimal):
        raise TypeError("Decimal is not allowed in hashed events; use integer minor units")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return _canonical(value.value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"type {type(value).__name__} has no canonical JSON form")


def _json_default(value: Any) -> Any:
    """What the fast encoder cannot write itself, converted as `_canonical` converts it."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping) and all(type(k) is str for k in value):
        return dict(value)
    raise TypeError(f"type {type(value).__name__} goes the reference way")


# Every event is hashed when applied: the C encoder with a `default` hook writes the same bytes as
# walking the value with `_canonical` first, at a fraction of the cost. Anything it refuses (NaN,
# Decimal, odd keys) is re-done by the reference path, which raises or converts exactly as specified.
_FAST_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
)


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of a value (see module docstring)."""
    try:
        return _FAST_ENCODER.encode(value).encode("utf-8")
    except (TypeError, ValueError):
        return json.dumps(
            _canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")


def hash_fields(type_name: str, fields: Mapping[str, Any]) -> str:
    """Hash of an event given its type name and all its fields (for auditors holding plain dicts)."""
    if "type" in fields:
        raise ValueError("an event field may not be called 'type': it is the hashed type name")
    payload = {**fields, "type": type_name}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def event_type_name(event: object) -> str:
    """The stable type name hashed with an event: its class qualname ("Order.Placed")."""
    return type(event).__qualname__


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(event_class: type) -> tuple[str, ...]:
    """The dataclass field names of an event class, looked up once per class (hashing is hot)."""
    names = _FIELD_NAMES.get(event_class)
    if names is None:
        names = _FIELD_NAMES[event_class] = tuple(f.name for f in dataclasses.fields(event_class))
    return names


def event_fields(event: object) -> dict[str, Any]:
    """Every dataclass field of an event, by name."""
    if not dataclasses.is_dataclass(event) or isinstance(event, type):
        raise TypeError(f"{type(event).__name__} is not a dataclass event")
    return {name: getattr(event, name) for name in _field_names(type(event))}


def event_hash(event: object) -> str:
    """SHA-256 hex of the event's canonical JSON (type + every field, prev_hash included)."""
    return hash_fields(event_type_name(event), event_fields(event))


_ENVELOPE_NAMES = {"originator_id": "aggregate_id", "originator_version": "version"}
_STORE_NAMES = {v: k for k, v in _ENVELOPE_NAMES.items()}


def to_envelope(event: object) -> dict[str, Any]:
    """The event's fields as published (schemas/): originator_id -> aggregate_id, version -> version."""
    return {_ENVELOPE_NAMES.get(k, k): v for k, v in event_fields(event).items()}


def from_envelope(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A published payload's fields under the event store's names, ready for `hash_fields`."""
    return {_STORE_NAMES.get(k, k): v for k, v in payload.items()}


class ChainedAggregate(Aggregate):
    """Base aggregate whose events are hash-linked; `last_hash` is the hash of the latest event."""

    class Event(Aggregate.Event):
        """Base event of chained aggregates: carries the hash of the previous event."""

        prev_hash: str

        def mutate(self, aggregate: Any) -> Any:
            agg = super().mutate(aggregate)
            assert agg is not None
            # Set after the state change so that replay computes the same head as the live object.
            agg.last_hash = event_hash(self)
            return agg

    class Created(Event, Aggregate.Created):
        """Base created event of chained aggregates."""

    if TYPE_CHECKING:  # set by Event.mutate; a class annotation would make the aggregate a dataclass
        last_hash: str

    @classmethod
    def _create_chained(cls: type[_A], event_class: type[Any], aggregate_id: UUID, now: datetime,
                        **fields: Any) -> _A:
        """Create the aggregate with its first event linked to the genesis hash."""
        return cls._create(event_class, id=aggregate_id, timestamp=now, prev_hash=GENESIS_HASH, **fields)

    def _trigger(self, event_class: type[Any], now: datetime, **fields: Any) -> None:
        """Trigger the next event, linked to the current head, stamped with the given time."""
        self.trigger_event(event_class, timestamp=now, prev_hash=self.last_hash, **fields)


class ChainedEvent(Protocol):
    """What `verify_chain` reads from an event."""

    @property
    def originator_id(self) -> UUID: ...

    @property
    def originator_version(self) -> int: ...

    @property
    def prev_hash(self) -> str: ...


@dataclass(frozen=True)
class ChainBreak:
    """The first place a sequence of events stops being a valid hash chain."""

    aggregate_id: UUID
    version: int
    reason: BreakReason
    detail: str


@dataclass(frozen=True)
class LocatedBreak:
    """A chain break found by `ChainChecker`, with where in the log it is (position, notification id)."""

    reason: BreakReason
    detail: str
    aggregate_id: Any
    """The aggregate's id as the caller keyed it (a UUID, or its text for auditors reading rows)."""
    version: int
    position: int | None = None
    """0-based place in log order; None where unknown (events read from Kafka)."""
    notification_id: int | None = None
    where: str | None = None

    def sort_key(self) -> tuple[int, int, int]:
        """Log order: by notification id where known, else by position."""
        order = self.notification_id if self.notification_id is not None else self.position or 0
        return (0, order, self.version)


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
    """Checks every aggregate's chain over events given in log order (the auditors' tool and `verify_chain`).

    Keeps the first break of each aggregate.

    `states[aggregate]` is [next version, hash of the last event, its position, its notification id];
    the next version is `_BROKEN` once the aggregate's chain has a reported break.
    """

    def __init__(self) -> None:
        self.states: dict[Any, list[Any]] = {}
        self.problems: list[LocatedBreak] = []
        self._gaps: dict[Any, _Gap] = {}
        self._links: dict[Any, _Link] = {}

    def check(
        self, position: int | None, nid: int, agg: Any, version: int, prev: str, digest: str,
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

    def unreadable(self, position: int | None, nid: int, agg: Any, version: int, detail: str,
                   where: str | None = None) -> None:
        """An event that does not decode: it was altered, and its aggregate's chain stops here."""
        self.problems.append(LocatedBreak("altered", detail, agg, version, position, nid, where=where))
        state = self.states.setdefault(agg, [1, GENESIS_HASH, position, nid])
        self._break(state, position, nid)

    def anomaly(
        self, state: list[Any] | None, position: int | None, nid: int, agg: Any, version: int,
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
            self.problems.append(LocatedBreak("duplicated", detail, agg, version, position, nid, where=where))
        self._break(state, position, nid)

    def _break(self, state: list[Any], position: int | None, nid: int) -> None:
        state[0], state[1], state[2], state[3] = _BROKEN, _PENDING, position, nid

    def _watch_gap(self, agg: Any, version: int, position: int | None, nid: int, where: str | None) -> None:
        gap = self._gaps.get(agg)
        if gap is not None and version == gap.expected:
            del self._gaps[agg]
            detail = (
                f"version {gap.seen} comes before version {gap.expected} in the log "
                f"(version {gap.expected} is at notification {nid})"
            )
            self.problems.append(
                LocatedBreak("reordered", detail, agg, gap.expected, gap.position, gap.notification_id,
                        where=gap.where)
            )

    def _resolve_link(self, agg: Any, link: _Link, version: int | None, prev: str | None) -> None:
        k = link.version
        if version == k + 1 and prev == link.expected_prev:
            detail = f"versions {k} and {k + 1} hold each other's events (version {k + 1} links to {k - 1})"
            self.problems.append(
                LocatedBreak("reordered", detail, agg, k, link.position, link.notification_id, where=link.where)
            )
            return
        if version == k + 1 and prev != link.hash:
            # Both links around k are broken: k itself (its prev_hash or content) was changed.
            detail = f"its hash and its prev_hash both disagree with the chain (versions {k - 1} and {k + 1})"
            self.problems.append(
                LocatedBreak("altered", detail, agg, k, link.position, link.notification_id, where=link.where)
            )
            return
        self.problems.append(self._predecessor_altered(agg, link, certain=version == k + 1))

    def _predecessor_altered(self, agg: Any, link: _Link, *, certain: bool) -> LocatedBreak:
        k = link.version
        if k == 1:
            return LocatedBreak("altered", "the first event's prev_hash is not the genesis hash", agg, 1,
                           link.position, link.notification_id, where=link.where)
        detail = f"its hash no longer matches the prev_hash recorded by version {k}"
        if not certain:
            detail += f" (or version {k}'s own prev_hash was changed: nothing follows it)"
        return LocatedBreak("altered", detail, agg, k - 1, link.prev_position, link.prev_notification_id,
                       where=link.where)

    def finish(self) -> list[LocatedBreak]:
        """Resolve what only the end of the log decides; the problems found, in log order."""
        for agg, link in self._links.items():
            self.problems.append(self._predecessor_altered(agg, link, certain=False))
        self._links.clear()
        for agg, gap in self._gaps.items():
            detail = f"version {gap.expected} is absent (version {gap.seen} follows version {gap.expected - 1})"
            self.problems.append(
                LocatedBreak("missing", detail, agg, gap.expected, gap.position, gap.notification_id,
                        where=gap.where)
            )
        self._gaps.clear()
        self.problems.sort(key=LocatedBreak.sort_key)
        return self.problems

    def last_events_between(self, low: int, high: int) -> list[tuple[Any, int, int, int]]:
        """(aggregate, version, position, notification id) of sound chains whose last event is in [low, high)."""
        found = []
        for agg, (next_version, _, position, nid) in self.states.items():
            if next_version != _BROKEN and position is not None and low <= position < high:
                found.append((agg, next_version - 1, position, nid))
        return sorted(found, key=lambda item: item[2])


def verify_chain(events: Iterable[Any]) -> ChainBreak | None:
    """Check the hash chains of the events (any mix of aggregates, in log order); first break or None.

    Takes decoded domain events (anything shaped like `ChainedEvent` that is a dataclass event); the
    same `ChainChecker` the auditors' `verify` runs over stored rows.
    """
    checker = ChainChecker()
    for position, event in enumerate(events):
        checker.check(position, position, event.originator_id, event.originator_version, event.prev_hash,
                      event_hash(event))
    found = checker.finish()
    if not found:
        return None
    first = found[0]
    return ChainBreak(first.aggregate_id, first.version, first.reason, first.detail)
