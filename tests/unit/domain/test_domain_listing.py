"""Listing transitions, legal and illegal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

import pytest

from domain.errors import DomainError, InvalidTimestampError
from domain.listing import (
    InvalidListingError,
    Listing,
    ListingClosedError,
    ListingCurrencyChangeError,
    ListingNotDraftError,
    ListingNotEditableError,
    ListingNotPublishedError,
    ListingNotSoldError,
    ListingNotSuspendedError,
    ListingStatus,
    NotListingOwnerError,
)
from domain.money import InvalidBasisPointsError, Money
from tests.unit.domain.support import CREATOR, SELLER, STRANGER, T0, at, make_listing


def _draft(**overrides: object) -> Listing:
    args: dict[str, object] = dict(listing_id=UUID(int=9), seller_id=SELLER, kind="ai_model",
                                   title="Llama tune", description="weights", category="nlp",
                                   price=Money(2_000, "EUR"), now=T0)
    args.update(overrides)
    return Listing.draft(**args)  # type: ignore[arg-type]


def test_draft_sets_fields() -> None:
    item = _draft(attributes={"params": "7B"}, creator_id=CREATOR, royalty_bps=300)
    assert item.status == ListingStatus.DRAFT and item.version == 1
    assert item.price == Money(2_000, "EUR") and item.attributes == {"params": "7B"}
    assert item.creator_id == CREATOR and item.royalty_bps == 300


@pytest.mark.parametrize(("overrides", "error"), [
    ({"kind": "car"}, InvalidListingError),
    ({"royalty_bps": 100}, InvalidListingError),
    ({"royalty_bps": 10_001, "creator_id": CREATOR}, InvalidBasisPointsError),
    ({"attributes": {"x": object()}}, InvalidListingError),
    ({"now": T0.replace(tzinfo=None)}, InvalidTimestampError),
])
def test_draft_refuses_bad_input(overrides: dict[str, object], error: type[DomainError]) -> None:
    with pytest.raises(error):
        _draft(**overrides)


def test_full_happy_life_cycle() -> None:
    item = _draft()
    item.revise(title="Llama tune v2", now=at(1))
    item.publish(now=at(2))
    item.change_price(price=Money(1_500, "EUR"), now=at(3))
    item.enrich(model_id="clip", model_version="2", embedding_ref="vec:1", condition_score=0.9,
                image_hashes=["abc"], now=at(4))
    item.boost(until=at(60), source="auto", now=at(5))
    item.mark_sold(order_id=UUID(int=77), now=at(6))
    assert item.status == ListingStatus.SOLD and item.title == "Llama tune v2"
    assert item.price.amount == 1_500 and item.boosted_until == at(60) and item.version == 7
    assert item.enrichment is not None and item.enrichment["model_version"] == "2"


def test_suspend_and_reinstate() -> None:
    item = make_listing()
    item.suspend(reason="stolen photos", now=at(2))
    assert item.status == ListingStatus.SUSPENDED and item.suspension_reason == "stolen photos"
    with pytest.raises(ListingNotEditableError):
        item.revise(title="x" * 5, now=at(3))
    item.reinstate(now=at(4))
    assert item.status == ListingStatus.PUBLISHED and item.suspension_reason is None


def test_relist_after_refund() -> None:
    item = make_listing()
    item.mark_sold(order_id=UUID(int=5), now=at(2))
    item.relist(now=at(3))
    assert item.status == ListingStatus.PUBLISHED and item.sold_order_id is None
    with pytest.raises(ListingNotSoldError):
        item.relist(now=at(4))


def _sold() -> Listing:
    item = make_listing()
    item.mark_sold(order_id=UUID(int=5), now=at(2))
    return item


def _withdrawn() -> Listing:
    item = make_listing()
    item.withdraw(now=at(2))
    return item


@pytest.mark.parametrize(("make", "action", "error"), [
    (_withdrawn, lambda x: x.publish(now=at(9)), ListingNotDraftError),
    (make_listing, lambda x: x.publish(now=at(9)), ListingNotDraftError),
    (_sold, lambda x: x.revise(title="New title", now=at(9)), ListingNotEditableError),
    (_sold, lambda x: x.change_price(price=Money(1, "EUR"), now=at(9)), ListingNotEditableError),
    (_sold, lambda x: x.withdraw(now=at(9)), ListingClosedError),
    (_withdrawn, lambda x: x.withdraw(now=at(9)), ListingClosedError),
    (_withdrawn, lambda x: x.enrich(model_id="m", model_version="1", now=at(9)), ListingClosedError),
    (_sold, lambda x: x.mark_sold(order_id=UUID(int=6), now=at(9)), ListingNotPublishedError),
    (_draft, lambda x: x.boost(until=at(99), source="paid", now=at(9)), ListingNotPublishedError),
    (make_listing, lambda x: x.boost(until=at(9), source="paid", now=at(9)), InvalidListingError),
    (make_listing, lambda x: x.reinstate(now=at(9)), ListingNotSuspendedError),
    (make_listing, lambda x: x.change_price(price=Money(1, "USD"), now=at(9)), ListingCurrencyChangeError),
    (make_listing, lambda x: x.enrich(model_id="m", model_version="1", condition_score=1.5, now=at(9)),
     InvalidListingError),
])
def test_illegal_transitions_raise_and_change_nothing(
    make: Callable[[], Listing], action: Callable[[Listing], None], error: type[DomainError]
) -> None:
    item = make()
    version = item.version
    with pytest.raises(error) as info:
        action(item)
    assert info.value.code.startswith("listing.") and item.version == version


def test_error_codes_are_machine_readable() -> None:
    item = _withdrawn()
    with pytest.raises(ListingNotDraftError) as info:
        item.publish(now=at(3))
    assert info.value.code == "listing.not_draft"
    assert info.value.to_dict()["details"]["status"] == "withdrawn"


def test_owner_check() -> None:
    item = make_listing()
    item.check_owner(SELLER)
    with pytest.raises(NotListingOwnerError):
        item.check_owner(STRANGER)


def test_can_be_ordered_only_when_published_and_in_currency() -> None:
    item = make_listing()
    item.check_can_be_ordered("EUR")
    with pytest.raises(ListingCurrencyChangeError):
        item.check_can_be_ordered("USD")
    with pytest.raises(ListingNotPublishedError):
        _draft().check_can_be_ordered("EUR")


def test_boost_end_must_be_aware() -> None:
    with pytest.raises(InvalidTimestampError):
        make_listing().boost(until=(T0 + timedelta(days=1)).replace(tzinfo=None), source="paid", now=at(2))
