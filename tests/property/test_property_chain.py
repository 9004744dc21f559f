"""Random aggregate histories: replay rebuilds equal aggregates and any tampering is pinpointed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.chain import ChainedAggregate, verify_chain
from domain.errors import DomainError
from domain.licence import Licence
from domain.listing import Listing
from domain.money import Money
from domain.trust import SignalKind, TrustScore, compute_score

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FAST = settings(max_examples=150, deadline=None)

LISTING_ACTIONS: list[Callable[[Listing, datetime, int], None]] = [
    lambda x, now, n: x.revise(title=f"title {n}", now=now),
    lambda x, now, n: x.publish(now=now),
    lambda x, now, n: x.change_price(price=Money(n, "EUR"), now=now),
    lambda x, now, n: x.enrich(
        model_id="clip", model_version=str(n), condition_score=n / 1000, image_hashes=[f"h{n}"], now=now
    ),
    lambda x, now, n: x.boost(until=now + timedelta(hours=1), source="auto", now=now),
    lambda x, now, n: x.suspend(reason="fraud?", now=now),
    lambda x, now, n: x.reinstate(now=now),
    lambda x, now, n: x.mark_sold(order_id=UUID(int=n), now=now),
    lambda x, now, n: x.relist(now=now),
    lambda x, now, n: x.withdraw(now=now),
]

steps = st.lists(st.tuples(st.integers(0, len(LISTING_ACTIONS) - 1), st.integers(0, 1000)), max_size=25)


def _listing_history(plan: list[tuple[int, int]]) -> tuple[Listing, list[Any]]:
    item = Listing.draft(
        listing_id=UUID(int=1),
        seller_id=UUID(int=2),
        kind="goods",
        title="thing",
        description="",
        category="misc",
        price=Money(100, "EUR"),
        now=T0,
        attributes={"colour": "red"},
    )
    for i, (action, n) in enumerate(plan):
        version = item.version
        try:
            LISTING_ACTIONS[action](item, T0 + timedelta(minutes=i + 1), n)
        except DomainError:
            assert item.version == version
    return item, list(item.collect_events())


def _replay(events: list[Any]) -> ChainedAggregate:
    aggregate: Any = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


@FAST
@given(plan=steps)
def test_listing_replay_rebuilds_equal_aggregate(plan: list[tuple[int, int]]) -> None:
    item, events = _listing_history(plan)
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    assert _replay(events).__dict__ == item.__dict__
    assert verify_chain(events) is None


@FAST
@given(plan=steps.filter(lambda p: len(p) >= 2), data=st.data())
def test_any_tampering_before_the_head_is_pinpointed(
    plan: list[tuple[int, int]], data: st.DataObject
) -> None:
    _, events = _listing_history(plan)
    assume(len(events) >= 3)
    i = data.draw(st.integers(0, len(events) - 2))
    version = i + 1
    kind = data.draw(st.sampled_from(["altered", "missing", "duplicated", "reordered"]))
    tampered = list(events)
    if kind == "altered":
        tampered[i] = dataclasses.replace(events[i], timestamp=events[i].timestamp + timedelta(seconds=1))
    elif kind == "missing":
        del tampered[i]
    elif kind == "duplicated":
        tampered.insert(i + 1, events[i])
        version = i + 1
    else:
        tampered[i], tampered[i + 1] = tampered[i + 1], tampered[i]
    found = verify_chain(tampered)
    assert found is not None and (found.reason, found.version) == (kind, version)


signals = st.lists(
    st.one_of(
        st.tuples(st.just(SignalKind.REVIEW), st.integers(1, 5), st.none()),
        st.tuples(st.just(SignalKind.DISPUTE_OUTCOME), st.none(), st.sampled_from(["won", "lost"])),
        st.tuples(
            st.sampled_from([SignalKind.COMPLETED_ORDER, SignalKind.FRAUD_FLAG, SignalKind.KYC_VERIFIED]),
            st.none(),
            st.none(),
        ),
    ),
    max_size=40,
)


@FAST
@given(plan=signals)
def test_trust_score_is_deterministic_and_replays(
    plan: list[tuple[SignalKind, int | None, str | None]],
) -> None:
    trust = TrustScore.start(user_id=UUID(int=5), now=T0)
    for i, (kind, stars, outcome) in enumerate(plan):
        now = T0 + timedelta(minutes=i)
        trust.record_signal(kind=kind, ref=f"ref-{i}", stars=stars, outcome=outcome, at=now, now=now)
    assert trust.score == compute_score(trust.signals) == compute_score(reversed(trust.signals))
    assert 0 <= trust.score <= 1000
    events = list(trust.collect_events())
    assert _replay(events).__dict__ == trust.__dict__ and verify_chain(events) is None


@FAST
@given(quota=st.integers(1, 50), uses=st.lists(st.integers(1, 20), max_size=20))
def test_metered_usage_never_exceeds_quota(quota: int, uses: list[int]) -> None:
    licence = Licence.issue(
        licence_id=UUID(int=3),
        listing_id=UUID(int=1),
        licensee_id=UUID(int=2),
        kind="usage_metered",
        quota=quota,
        now=T0,
    )
    for i, units in enumerate(uses):
        now = T0 + timedelta(minutes=i)
        try:
            licence.record_usage(units=units, at=now, now=now)
        except DomainError:
            assert units > (licence.remaining or 0)
        assert 0 <= licence.used <= quota
        assert licence.check(now).allowed == (licence.used < quota)
    events = list(licence.collect_events())
    assert _replay(events).__dict__ == licence.__dict__ and verify_chain(events) is None


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)


@FAST
@given(title=_text, description=_text, score=st.floats(0, 1), attributes=st.dictionaries(_text, st.one_of(
    _text, st.integers(-(2**70), 2**70), _floats, st.booleans(), st.none()), max_size=5),
    price=st.integers(0, 10**12))
def test_the_stored_event_fast_path_equals_the_reference_hash(
    title: str, description: str, score: float, attributes: dict[str, Any], price: int
) -> None:
    """The audit codec's orjson path gives `event_hash` (the spec) for anything an event may hold."""
    from commands.audit.codec import StoredHasher, default_mapper, fast_event_and_hash
    from domain.chain import event_hash

    listing = Listing.draft(listing_id=UUID(int=7), seller_id=UUID(int=8), kind="goods", title=title or "t",
                            description=description, category="home", price=Money(price, "EUR"), now=T0,
                            attributes=attributes)
    listing.enrich(model_id="m", model_version="1", condition_score=score, image_hashes=[title], now=T0)
    mapper, hasher = default_mapper(), StoredHasher()
    for event in listing.collect_events():
        stored = mapper.to_stored_event(event)
        reference = event_hash(mapper.to_domain_event(stored))
        fast, prev = hasher(str(stored.originator_id), stored.originator_version, stored.topic, stored.state)
        assert fast == reference and prev == event.prev_hash  # type: ignore[attr-defined]
        assert fast_event_and_hash(stored, mapper)[1] == reference
