"""The relay's unvalidated fast path publishes byte for byte what the validated path publishes."""

from __future__ import annotations

from uuid import uuid4

from commands.messages import to_message
from domain import escrow
from schemas.messages import decode_event
from tests.unit.domain.support import at, make_listing, make_wallets


def test_fast_and_validated_messages_are_identical_and_decode() -> None:
    listing = make_listing(kind="goods", royalty_bps=500)
    wallets = make_wallets()
    buyer = wallets["buyer"]
    result = escrow.place_order(order_id=uuid4(), listing=listing, buyer_id=buyer.owner_id, buyer_wallet=buyer,
                                fee_bps=500, now=at(3))
    events = [event for aggregate in (listing, *wallets.values(), result.order) for event in aggregate.collect_events()]
    assert len({type(event).__qualname__ for event in events}) >= 6

    for position, event in enumerate(events, start=1):
        checked = to_message(event, position)
        fast = to_message(event, position, validate=False)
        assert fast.value == checked.value and fast.headers == checked.headers
        decoded = decode_event(fast.value, fast.headers)
        assert decoded.aggregate_id == event.originator_id and decoded.version == event.originator_version
