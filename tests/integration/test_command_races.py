"""A command racing another on the same order, on the real PostgreSQL store, with the interleaving forced.

A handler loads the order, then the wallets: two reads, not one snapshot. A cancel that read the order before
another command settled it, and the buyer's wallet after, used to fail on the wallet (`wallet.hold_not_found`)
although the rule it really broke is the order's state.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import pytest

from commands.application import Marketplace, VersionConflict
from commands.handlers import listings, orders, users, wallets
from domain.chain import ChainedAggregate
from domain.errors import DomainError
from domain.order import Order
from infra.settings import Settings
from infra.tokens import Principal
from schemas.listing import DraftListing, PublishListing
from schemas.order import CancelOrder, PlaceOrder
from schemas.user import RegisterUser
from schemas.wallet import Deposit
from tests.support import require_services

A = TypeVar("A", bound=ChainedAggregate)


class PausingMarketplace(Marketplace):
    """Pauses the first handler that loads an order in `pause_in`, right after the load, until `resume`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.pause_in: str | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def load(self, cls: type[A], aggregate_id: UUID, *, if_match: int | None = None) -> A:
        aggregate = super().load(cls, aggregate_id, if_match=if_match)
        if cls is Order and threading.current_thread().name == self.pause_in:
            self.pause_in = None  # once: the re-run on fresh state goes straight through
            self.paused.set()
            assert self.resume.wait(20)
        return aggregate


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[PausingMarketplace]:
    require_services(settings, "postgres", "redis")
    marketplace = PausingMarketplace(settings)
    yield marketplace
    marketplace.close()


def _user(app: Marketplace, role: str) -> Principal:
    cmd = RegisterUser(email=f"{role}-{uuid.uuid4().hex[:10]}@example.com", password="long-enough-pw",
                       display_name=role, role=role)
    return Principal(app.run(lambda: users.register_user(app, cmd)).aggregate_id, role)


def _paid_order(app: Marketplace) -> tuple[Principal, UUID]:
    seller, buyer = _user(app, "seller"), _user(app, "buyer")
    deposit = Deposit(amount={"amount": 5_000, "currency": "EUR"}, reference="psp")
    app.run(lambda: wallets.deposit(app, buyer, buyer.user_id, deposit))
    draft = DraftListing(kind="goods", title="Lamp", category="home", price={"amount": 3_000, "currency": "EUR"})
    listing_id = app.run(lambda: listings.draft_listing(app, seller, draft)).aggregate_id
    app.run(lambda: listings.publish_listing(app, seller, PublishListing(listing_id=listing_id)))
    placed = app.run(lambda: orders.place_order(app, buyer, PlaceOrder(listing_id=listing_id)))
    return buyer, placed.aggregate_id


def _race(app: PausingMarketplace, if_match: int | None) -> tuple[Any, Order]:
    """Cancel twice: the first reads the order, the second settles it, then the first carries on."""
    buyer, order_id = _paid_order(app)
    cancel = CancelOrder(order_id=order_id, reason="changed my mind")
    outcome: dict[str, Any] = {}

    def slow_cancel() -> None:
        try:
            outcome["result"] = app.run(lambda: orders.cancel_order(app, buyer, cancel, if_match), if_match=if_match)
        except (DomainError, VersionConflict) as error:
            outcome["result"] = error

    app.pause_in, app.paused, app.resume = "slow-cancel", threading.Event(), threading.Event()
    slow = threading.Thread(target=slow_cancel, name="slow-cancel")
    slow.start()
    assert app.paused.wait(20)
    app.run(lambda: orders.cancel_order(app, buyer, cancel))  # the racing command commits meanwhile
    app.resume.set()
    slow.join(30)
    return outcome["result"], app.load(Order, order_id)


def test_a_cancel_that_lost_the_race_is_answered_with_the_orders_real_state(app: PausingMarketplace) -> None:
    result, order = _race(app, if_match=None)

    assert isinstance(result, DomainError), result
    assert result.code == "order.invalid_transition"
    assert order.status.value == "refunded"


def test_a_pinned_cancel_that_lost_the_race_is_a_version_conflict(app: PausingMarketplace) -> None:
    result, order = _race(app, if_match=2)

    assert isinstance(result, VersionConflict), result
    assert result.current_version == order.version


def test_racing_commands_on_many_orders_never_answer_a_wallet_error(app: PausingMarketplace) -> None:
    """Free-running threads (no forced interleaving): every answer is a success or the order's own refusal."""
    started = datetime.now(UTC)
    paid = [_paid_order(app) for _ in range(6)]
    answers: list[str] = []
    lock = threading.Lock()

    def cancel(buyer: Principal, order_id: UUID) -> None:
        try:
            app.run(lambda: orders.cancel_order(app, buyer, CancelOrder(order_id=order_id, reason="race")))
            code = "ok"
        except DomainError as error:
            code = error.code
        with lock:
            answers.append(code)

    threads = [threading.Thread(target=cancel, args=pair) for pair in paid for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(set(answers)) <= ["ok", "order.invalid_transition"]
    assert answers.count("ok") == len(paid)
    assert (datetime.now(UTC) - started).total_seconds() < 60
