"""A marketplace on the in-memory event store with a few parties, a settable clock and builders for tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from commands.application import Change, CommandResult, Idempotency, Marketplace
from commands.auth import Principal
from commands.handlers import licences, listings, orders, users, wallets
from domain.chain import ChainedAggregate
from schemas.base import MoneyIn
from schemas.licence import IssueLicence
from schemas.listing import DraftListing, PublishListing
from schemas.order import OpenDispute, PlaceOrder, ShipOrder
from schemas.user import ForgetUser, RegisterUser
from schemas.wallet import Deposit

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
A = TypeVar("A", bound=ChainedAggregate)
E = TypeVar("E", bound=Exception)


class Clock:
    """The marketplace's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def eur(amount: int, currency: str = "EUR") -> MoneyIn:
    """An amount in a command, in (euro) cents."""
    return MoneyIn(amount=amount, currency=currency)


class World:
    """The marketplace plus a seller, a buyer, an admin and a stranger (a seller who owns nothing here)."""

    def __init__(self, app: Marketplace, clock: Clock) -> None:
        self.app = app
        self.clock = clock
        self.seller = Principal(uuid4(), "seller")
        self.buyer = Principal(uuid4(), "buyer")
        self.admin = Principal(uuid4(), "admin")
        self.stranger = Principal(uuid4(), "seller")

    # Running commands ---------------------------------------------------------------------------------

    def run(self, act: Callable[[], Change], *, key: Idempotency | None = None,
            if_match: int | None = None) -> CommandResult:
        """Run a handler the way the command API does."""
        return self.app.run(act, idempotency=key, if_match=if_match)

    def position(self) -> int:
        """The last log position (0 for an empty log)."""
        return int(self.app.recorder.max_notification_id() or 0)

    def refuses(self, error: type[E], act: Callable[[], Change], *, key: Idempotency | None = None,
                if_match: int | None = None) -> E:
        """Run a command that must be refused with `error` and append nothing."""
        before = self.position()
        with pytest.raises(error) as info:
            self.run(act, key=key, if_match=if_match)
        assert self.position() == before, "a refused command appended events"
        return info.value

    def forbidden(self, act: Callable[[], Change]) -> Exception:
        """Run a command the caller may not run: refused with code `auth.forbidden`, nothing appended.

        Matched by code, not class: role checks raise a domain error, ownership checks the shared auth one.
        """
        before = self.position()
        with pytest.raises(Exception) as info:  # noqa: PT011 - the code below is the assertion
            self.run(act)
        assert getattr(info.value, "code", None) == "auth.forbidden", repr(info.value)
        assert self.position() == before, "a refused command appended events"
        return info.value

    def get(self, cls: type[A], aggregate_id: UUID) -> A:
        return self.app.load(cls, aggregate_id)

    def version(self, aggregate_id: UUID) -> int:
        return int(self.app.repository.get(aggregate_id).version)

    # Builders -----------------------------------------------------------------------------------------

    def register(self, email: str = "ada@example.org", role: str = "buyer") -> UUID:
        cmd = RegisterUser.model_validate({"email": email, "password": PASSWORD, "display_name": "Ada",
                                           "role": role, "address": "1 Main St"})
        return self.run(lambda: users.register_user(self.app, cmd)).aggregate_id

    def forgotten(self, role: str = "seller", email: str = "gone@example.org") -> Principal:
        """A registered user whom an admin then forgot."""
        user_id = self.register(email, role=role)
        self.run(lambda: users.forget_user(self.app, self.admin, ForgetUser(user_id=user_id)))
        return Principal(user_id, role)

    def listing(self, *, kind: str = "goods", publish: bool = True, price: int = 10_000,
                creator_id: UUID | None = None, royalty_bps: int = 0, seller: Principal | None = None) -> UUID:
        """A listing of the world's seller (or `seller`), published unless told otherwise."""
        seller = seller or self.seller
        cmd = DraftListing.model_validate({"kind": kind, "title": "Brass lamp", "category": "home",
                                           "price": eur(price), "creator_id": creator_id, "royalty_bps": royalty_bps})
        listing_id = self.run(lambda: listings.draft_listing(self.app, seller, cmd)).aggregate_id
        if publish:
            self.run(lambda: listings.publish_listing(self.app, seller, PublishListing(listing_id=listing_id)))
        return listing_id

    def fund(self, who: Principal, amount: int = 50_000) -> None:
        cmd = Deposit(amount=eur(amount), reference=f"psp-{uuid4().hex[:8]}")
        self.run(lambda: wallets.deposit(self.app, who, who.user_id, cmd))

    def order(self, *, status: str = "funds_held", **listing: Any) -> UUID:
        """An order of the world's buyer for a new listing, moved on to `status` (funds_held, shipped, disputed)."""
        listing_id = self.listing(**listing)
        self.fund(self.buyer)
        placed = self.run(lambda: orders.place_order(self.app, self.buyer, PlaceOrder(listing_id=listing_id)))
        order_id = placed.aggregate_id
        if status in ("shipped", "disputed"):
            self.run(lambda: orders.ship_order(self.app, self.seller, ShipOrder(order_id=order_id)))
        if status == "disputed":
            cmd = OpenDispute(order_id=order_id, reason="never arrived")
            self.run(lambda: orders.open_dispute(self.app, self.buyer, cmd))
        return order_id

    def licence(self, *, kind: str = "usage_metered", quota: int | None = 10,
                expires_at: datetime | None = None) -> UUID:
        """A licence for a new AI model listing of the world's seller, issued to the world's buyer."""
        listing_id = self.listing(kind="ai_model")
        cmd = IssueLicence.model_validate({"listing_id": listing_id, "licensee_id": self.buyer.user_id, "kind": kind,
                                           "quota": quota, "expires_at": expires_at})
        return self.run(lambda: licences.issue_licence(self.app, self.seller, cmd)).aggregate_id
