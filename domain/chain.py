"""Tamper evidence: every event carries the hash of its aggregate's previous event.

`event_hash(event)` is the SHA-256 (lowercase hex) of the canonical JSON of
`{"type": <event class qualname, e.g. "Listing.Published">, <every dataclass field of the event>}`
(fields include originator_id, originator_version, timestamp, prev_hash and, for created events,
originator_topic). Canonical JSON: keys sorted, separators (",", ":"), UTF-8 (ensure_ascii=False),
UUID -> str, datetime -> isoformat(), tuple -> list, finite floats as Python's repr, Decimal/NaN refused.
An auditor recomputes it from a decoded stored event alone (`hash_fields` works on plain dicts too);
the type name is the part after ":" of the stored topic. The first event links to `GENESIS_HASH`.

The chain only protects events that have a successor: altering an aggregate's last event is caught by
the log-wide Merkle checkpoints, not here. Stored chained events are never upcast in place (that would
change their hash); schema upcasters work on the published JSON instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
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


@dataclass
class _Head:
    expected_version: int = 1
    last_hash: str = GENESIS_HASH


def _later_versions(events: Sequence[ChainedEvent]) -> list[set[tuple[UUID, int]]]:
    """For each index, the (aggregate, version) pairs that occur after it."""
    later: list[set[tuple[UUID, int]]] = [set() for _ in events]
    seen: set[tuple[UUID, int]] = set()
    for i in range(len(events) - 1, -1, -1):
        later[i] = set(seen)
        seen.add((events[i].originator_id, events[i].originator_version))
    return later


def _check_one(event: ChainedEvent, head: _Head, still_to_come: set[tuple[UUID, int]]) -> ChainBreak | None:
    agg_id, version = event.originator_id, event.originator_version
    if version < head.expected_version:
        return ChainBreak(agg_id, version, "duplicated", f"version {version} appears more than once")
    if version > head.expected_version:
        missing = head.expected_version
        if (agg_id, missing) in still_to_come:
            return ChainBreak(agg_id, missing, "reordered", f"version {version} comes before {missing}")
        return ChainBreak(agg_id, missing, "missing", f"version {missing} is absent (next is {version})")
    if event.prev_hash != head.last_hash:
        # The link recorded in this event no longer matches its predecessor (or genesis): either the
        # predecessor's content or this event's prev_hash was changed; report the predecessor.
        altered = max(version - 1, 1)
        return ChainBreak(agg_id, altered, "altered", f"prev_hash of version {version} does not match")
    head.expected_version = version + 1
    head.last_hash = event_hash(event)
    return None


def verify_chain(events: Iterable[Any]) -> ChainBreak | None:
    """Check the hash chains of the events (any mix of aggregates, in log order); first break or None.

    Takes decoded domain events (anything shaped like `ChainedEvent` that is a dataclass event).
    """
    ordered: list[ChainedEvent] = list(events)
    later = _later_versions(ordered)
    heads: defaultdict[UUID, _Head] = defaultdict(_Head)
    for i, event in enumerate(ordered):
        found = _check_one(event, heads[event.originator_id], later[i])
        if found is not None:
            return found
    return None
