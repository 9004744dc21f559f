"""The stored-event codec of the audit tools: decode eventsourcing's JSON rows and recompute `event_hash`.

The specification is `domain.chain` (`canonical_json`, `event_hash`); this is its fast path over stored
rows. The stored JSON is parsed with orjson and rehashed with orjson's sorted output, which gives the
bytes of `domain.chain.canonical_json` for everything the store writes (strings, integers, floats printed
without an exponent, eventsourcing's datetime and UUID encodings). Anything else (a float that Python
would print with an exponent, an unknown encoding, a class-versioned event) goes through the
eventsourcing mapper and `domain.chain.event_hash` (the reference path). It lives here, not in domain/,
because domain/ may not import orjson; a property test proves both paths give the same hash.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import resolve_topic

from commands.audit.merkle import AuditError
from domain.chain import event_hash

_HEX32 = re.compile(r"[0-9a-f]{32}")
# orjson prints floats like Python's repr except where repr switches to an exponent.
_FLOAT_PLAIN_MIN, _FLOAT_PLAIN_MAX = 1e-4, 1e16
# orjson reads integers beyond 64 bits as floats; the mapper (json) keeps them exact.
_FLOAT_EXACT_INT = 2.0**63
_PLAIN = frozenset({str, int, bool, type(None)})


class UnreadableEvent(AuditError):
    """A stored or published event that cannot be decoded into a hashable event."""


class _Fallback(Exception):
    """The fast path does not cover this event: use the mapper."""


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


def canonical_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Stored fields with eventsourcing's datetime and UUID encodings replaced by their canonical text."""
    _to_canonical(fields)
    return fields
