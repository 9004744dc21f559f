"""Review: one per released order, 1..5 stars, editable for 14 days by its author, one reply by the seller."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from domain.review import (
    EditWindowClosedError,
    InvalidReviewError,
    NotReviewPartyError,
    OrderNotReviewableError,
    ReplyExistsError,
    Review,
    check_order_reviewable,
    review_id_for,
)
from tests.unit.domain.support import BUYER, SELLER, STRANGER, T0

ORDER, LISTING = UUID(int=10), UUID(int=11)


def _review(stars: int = 4, text: str = "fine") -> Review:
    return Review.write(order_id=ORDER, listing_id=LISTING, seller_id=SELLER, buyer_id=BUYER, stars=stars,
                        text=text, now=T0)


def test_one_review_id_per_order() -> None:
    assert _review().id == review_id_for(ORDER) != review_id_for(LISTING)


@pytest.mark.parametrize(("stars", "text"), [(0, "x"), (6, "x"), (True, "x"), (3, "x" * 2001)])
def test_bad_content_refused(stars: int, text: str) -> None:
    with pytest.raises(InvalidReviewError):
        _review(stars, text)


def test_only_the_buyer_of_a_released_order_reviews() -> None:
    with pytest.raises(NotReviewPartyError):
        check_order_reviewable(order_status="released", buyer_id=BUYER, reviewer_id=STRANGER, order_id=ORDER)
    with pytest.raises(OrderNotReviewableError):
        check_order_reviewable(order_status="shipped", buyer_id=BUYER, reviewer_id=BUYER, order_id=ORDER)
    check_order_reviewable(order_status="released", buyer_id=BUYER, reviewer_id=BUYER, order_id=ORDER)


def test_edit_within_14_days_by_author_only() -> None:
    review = _review()
    review.edit(by=BUYER, stars=2, text="worse", now=T0 + timedelta(days=14))
    assert (review.stars, review.text) == (2, "worse")
    with pytest.raises(NotReviewPartyError):
        review.edit(by=SELLER, stars=5, text="x", now=T0)
    with pytest.raises(EditWindowClosedError):
        review.edit(by=BUYER, stars=5, text="x", now=T0 + timedelta(days=14, seconds=1))


def test_seller_replies_once() -> None:
    review = _review()
    with pytest.raises(NotReviewPartyError):
        review.answer(by=BUYER, text="me", now=T0)
    review.answer(by=SELLER, text="thanks", now=T0)
    assert review.reply == "thanks"
    with pytest.raises(ReplyExistsError):
        review.answer(by=SELLER, text="again", now=T0)
