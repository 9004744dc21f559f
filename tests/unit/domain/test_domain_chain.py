"""Hash chains: every event links to its predecessor; verification finds the first break."""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex

from domain.chain import (
    GENESIS_HASH,
    ChainBreak,
    canonical_json,
    event_hash,
    from_envelope,
    hash_fields,
    to_envelope,
    verify_chain,
)
from domain.listing import Listing
from domain.money import Money
from tests.unit.domain.support import T0, at


def _events(listing_id: int = 7) -> list[Any]:
    item = Listing.draft(listing_id=UUID(int=listing_id), seller_id=UUID(int=1), kind="dataset",
                         title="Birds", description="", category="vision", price=Money(500, "USD"), now=T0,
                         attributes={"rows": 1000, "tags": ["a", "b"]})
    item.publish(now=at(1))
    item.change_price(price=Money(450, "USD"), now=at(2))
    item.enrich(model_id="clip", model_version="1", condition_score=0.25, image_hashes=["h1"], now=at(3))
    item.withdraw(now=at(4))
    return list(item.collect_events())


def _altered(event: Any, **changes: Any) -> Any:
    return dataclasses.replace(event, **changes)


def test_first_event_links_to_genesis_and_each_to_its_predecessor() -> None:
    events = _events()
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == event_hash(before)


def test_aggregate_keeps_hash_of_last_event() -> None:
    item = Listing.draft(listing_id=UUID(int=9), seller_id=UUID(int=1), kind="goods", title="Pen",
                         description="", category="office", price=Money(5, "EUR"), now=T0)
    assert item.last_hash == event_hash(item.pending_events[-1])


def test_intact_chain_verifies() -> None:
    assert verify_chain(_events()) is None


def test_interleaved_aggregates_verify() -> None:
    a, b = _events(1), _events(2)
    mixed = [e for pair in zip(a, b, strict=True) for e in pair]
    assert verify_chain(mixed) is None


def test_altered_event_detected_at_its_version() -> None:
    events = _events()
    events[2] = _altered(events[2], price_amount=1)
    found = verify_chain(events)
    assert found == ChainBreak(events[0].originator_id, 3, "altered", found.detail if found else "")


def test_altered_first_event_detected() -> None:
    events = _events()
    events[0] = _altered(events[0], prev_hash="f" * 64)
    found = verify_chain(events)
    assert found is not None and (found.version, found.reason) == (1, "altered")


def test_missing_event_detected() -> None:
    events = _events()
    del events[2]
    found = verify_chain(events)
    assert found is not None and (found.version, found.reason) == (3, "missing")


def test_duplicated_event_detected() -> None:
    events = _events()
    events.insert(3, events[2])
    found = verify_chain(events)
    assert found is not None and (found.version, found.reason) == (3, "duplicated")


def test_reordered_events_detected() -> None:
    events = _events()
    events[1], events[2] = events[2], events[1]
    found = verify_chain(events)
    assert found is not None and (found.version, found.reason) == (2, "reordered")


def test_first_break_in_log_order_is_reported() -> None:
    a, b = _events(1), _events(2)
    del b[1]
    a[3] = _altered(a[3], model_id="other")
    found = verify_chain([*b, *a])
    assert found is not None and found.aggregate_id == UUID(int=2) and found.reason == "missing"


def test_canonical_json_is_stable_and_refuses_decimal() -> None:
    from decimal import Decimal

    import pytest

    assert canonical_json({"b": 1, "a": [UUID(int=1), T0]}) == (
        b'{"a":["00000000-0000-0000-0000-000000000001","2024-05-01T12:00:00+00:00"],"b":1}'
    )
    with pytest.raises(TypeError):
        canonical_json({"x": Decimal("1.0")})
    with pytest.raises(TypeError):
        canonical_json({"x": float("nan")})


def test_hash_recomputed_from_events_decoded_by_the_event_store_mapper() -> None:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper: Mapper[UUID] = Mapper(transcoder=transcoder)
    events = _events()
    decoded = [mapper.to_domain_event(mapper.to_stored_event(e)) for e in events]
    assert [event_hash(e) for e in decoded] == [event_hash(e) for e in events]
    assert verify_chain(decoded) is None
    replayed: Aggregate | None = None
    for event in decoded:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Listing) and replayed.last_hash == event_hash(events[-1])


def test_hash_recomputed_from_published_payload() -> None:
    from schemas.registry import REGISTRY

    for event in _events():
        model = REGISTRY.latest_for_event_type(type(event).__qualname__)
        parsed = model.model_validate_json(model.model_validate(to_envelope(event)).model_dump_json())
        assert hash_fields(model.event_type, from_envelope(parsed.model_dump())) == event_hash(event)
