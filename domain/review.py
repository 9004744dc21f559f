"""Review: a buyer's rating of a released order (its seller and listing), with one reply from the seller.

Rules: only the order's buyer, only once the order is released; one review per order (the aggregate id is
derived from the order id with uuid5, so two concurrent posts collide on version 1 of the same aggregate);
1..5 stars, text at most 2,000 characters; the buyer may edit it for 14 days after writing it; the seller
may reply once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid5

from domain.chain import ChainedAggregate
from domain.errors import DomainError, NotPartyError, check_aware

REVIEW_NAMESPACE = UUID("5d1f7a3e-2b4c-5e6f-9a8b-7c6d5e4f3a2b")
EDIT_WINDOW = timedelta(days=14)
MAX_TEXT = 2_000


class ReviewError(DomainError):
    """A review rule was broken."""

    code = "review.error"


class InvalidReviewError(ReviewError):
    """Stars outside 1..5 or text over 2,000 characters."""

    code = "review.invalid"


class OrderNotReviewableError(ReviewError):
    """Only a released order can be reviewed."""

    code = "review.order_not_released"


class EditWindowClosedError(ReviewError):
    """A review may be edited for 14 days after it was written."""

    code = "review.edit_window_closed"


class ReplyExistsError(ReviewError):
    """The seller already replied to this review."""

    code = "review.reply_exists"


class ReviewExistsError(ReviewError):
    """This order already has its review."""

    code = "review.exists"


class NotReviewPartyError(NotPartyError):
    """Only the order's buyer reviews it; only its seller replies."""

    code = "review.not_party"


def review_id_for(order_id: UUID) -> UUID:
    """The id of an order's one review."""
    return uuid5(REVIEW_NAMESPACE, str(order_id))


def check_review_content(stars: int, text: str) -> None:
    """1..5 stars (an int, not a bool) and at most 2,000 characters of text."""
    if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
        raise InvalidReviewError("stars must be 1..5", stars=stars)
    if len(text) > MAX_TEXT:
        raise InvalidReviewError(f"text is at most {MAX_TEXT} characters", length=len(text))


def check_order_reviewable(*, order_status: str, buyer_id: UUID, reviewer_id: UUID, order_id: UUID) -> None:
    """The reviewer is the order's buyer and the order was released (delivered and paid out)."""
    if reviewer_id != buyer_id:
        raise NotReviewPartyError("only the order's buyer may review it", order_id=order_id)
    if order_status != "released":
        raise OrderNotReviewableError(f"order is {order_status}, reviews need a released order", order_id=order_id)


class Review(ChainedAggregate):
    """A buyer's review of an order's seller and listing."""

    class Event(ChainedAggregate.Event):
        """Base class of review events."""

    class Written(Event, ChainedAggregate.Created):
        """The buyer reviewed a released order."""

        order_id: UUID
        listing_id: UUID
        seller_id: UUID
        buyer_id: UUID
        stars: int
        text: str

    def __init__(self, order_id: UUID, listing_id: UUID, seller_id: UUID, buyer_id: UUID, stars: int,
                 text: str) -> None:
        self.order_id = order_id
        self.listing_id = listing_id
        self.seller_id = seller_id
        self.buyer_id = buyer_id
        self.stars = stars
        self.text = text
        self.reply: str | None = None

    @classmethod
    def write(cls, *, order_id: UUID, listing_id: UUID, seller_id: UUID, buyer_id: UUID, stars: int, text: str,
              now: datetime) -> Review:
        """Write the order's review (the caller checked `check_order_reviewable`)."""
        check_aware(now)
        check_review_content(stars, text)
        return cls._create_chained(cls.Written, review_id_for(order_id), now, order_id=order_id,
                                   listing_id=listing_id, seller_id=seller_id, buyer_id=buyer_id, stars=stars,
                                   text=text)

    def check_author(self, user_id: UUID) -> None:
        """Only the buyer who wrote it may edit it."""
        if user_id != self.buyer_id:
            raise NotReviewPartyError("only its author may edit a review", review_id=self.id)

    def check_edit_window(self, now: datetime) -> None:
        """Edits are accepted until 14 days after the review was written."""
        if now - self.created_on > EDIT_WINDOW:
            raise EditWindowClosedError(review_id=self.id, written=self.created_on.isoformat())

    class Edited(Event):
        """The buyer changed their stars and text."""

        stars: int
        text: str

        def apply(self, aggregate: Review) -> None:
            aggregate.stars = self.stars
            aggregate.text = self.text

    def edit(self, *, by: UUID, stars: int, text: str, now: datetime) -> None:
        """The author edits their review within the window."""
        check_aware(now)
        self.check_author(by)
        self.check_edit_window(now)
        check_review_content(stars, text)
        self._trigger(self.Edited, now, stars=stars, text=text)

    class Replied(Event):
        """The seller replied (once)."""

        text: str

        def apply(self, aggregate: Review) -> None:
            aggregate.reply = self.text

    def answer(self, *, by: UUID, text: str, now: datetime) -> None:
        """The reviewed seller replies once."""
        check_aware(now)
        if by != self.seller_id:
            raise NotReviewPartyError("only the reviewed seller may reply", review_id=self.id)
        if self.reply is not None:
            raise ReplyExistsError(review_id=self.id)
        if not text or len(text) > MAX_TEXT:
            raise InvalidReviewError(f"a reply has 1..{MAX_TEXT} characters", length=len(text))
        self._trigger(self.Replied, now, text=text)
