"""Money under concurrent requests, over real HTTP on the real event store: nothing doubled, nothing lost.

Every race here is free-running (threads released together by a barrier); the assertions are on the exact
outcome: how many requests won, what the others were told, and every balance to the minor unit.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx

from commands.application import MAX_ATTEMPTS, Marketplace
from commands.handlers.users import user_id_for
from domain.user import User as UserAggregate
from tests.integration.test_command_api import PASSWORD, User, balances, fund, published_listing, register

T = TypeVar("T")


def together(count: int, call: Callable[[int], T]) -> list[T]:
    """Run `call(0..count-1)` in threads that start at the same moment."""
    barrier = threading.Barrier(count)

    def start(n: int) -> T:
        barrier.wait(10)
        return call(n)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count)))


def test_concurrent_requests_with_one_idempotency_key_append_once_and_all_get_the_first_response(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    buyer = register(api, "buyer")
    headers = {**buyer.headers, "Idempotency-Key": f"deposit-{uuid.uuid4()}"}
    body = {"amount": {"amount": 1_234, "currency": "EUR"}, "reference": "psp-once"}

    answers = together(12, lambda _: api.post(f"/wallets/{buyer.user_id}/deposits", headers=headers, json=body))

    assert [a.status_code for a in answers] == [200] * 12
    assert all(a.json() == answers[0].json() for a in answers)  # the same response, positions included
    assert sorted(a.headers.get("Idempotent-Replayed", "false") for a in answers).count("false") <= 1
    assert balances(marketplace, buyer.user_id) == (1_234, 0)
    wallet_id = answers[0].json()["aggregate_id"]
    assert marketplace.repository.get(uuid.UUID(wallet_id)).version == 2  # opened + deposited, once


def _deposits_together(api: httpx.Client, buyer: User, count: int) -> list[httpx.Response]:
    return together(count, lambda n: api.post(f"/wallets/{buyer.user_id}/deposits", headers=buyer.headers, json={
        "amount": {"amount": 100 + n, "currency": "EUR"}, "reference": f"psp-{n}"}))


def test_unpinned_deposits_on_one_wallet_up_to_the_retry_bound_are_re_run_and_none_is_lost(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    """Each clash round commits one of the racers, so MAX_ATTEMPTS racers all get through."""
    buyer = register(api, "buyer")
    fund(api, buyer, 1)  # the wallet exists: every deposit below writes its next version

    answers = _deposits_together(api, buyer, MAX_ATTEMPTS)

    assert [a.status_code for a in answers] == [200] * MAX_ATTEMPTS, [a.text for a in answers if a.status_code != 200]
    assert balances(marketplace, buyer.user_id) == (1 + sum(100 + n for n in range(MAX_ATTEMPTS)), 0)
    assert sorted(a.json()["version"] for a in answers) == list(range(3, 3 + MAX_ATTEMPTS))


def test_unpinned_deposits_past_the_retry_bound_are_refused_whole_never_lost(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    """Twice the bound: a racer that lost every attempt gets 409 version.conflict; the rest add up exactly."""
    buyer = register(api, "buyer")
    fund(api, buyer, 1)

    answers = _deposits_together(api, buyer, 2 * MAX_ATTEMPTS)

    accepted = [n for n, a in enumerate(answers) if a.status_code == 200]
    refused = [a.json()["error"] for a in answers if a.status_code != 200]
    assert len(accepted) >= MAX_ATTEMPTS and all(error["code"] == "version.conflict" for error in refused)
    assert balances(marketplace, buyer.user_id) == (1 + sum(100 + n for n in accepted), 0)
    versions = sorted(answers[n].json()["version"] for n in accepted)
    assert versions == list(range(3, 3 + len(accepted)))  # no version written twice, none skipped


def test_concurrent_settlements_paying_one_shared_creator_wallet_all_succeed_exactly(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    """Every release credits the platform's and the creator's wallets: busy shared aggregates, re-run unpinned."""
    creator, count, price = register(api, "seller"), 6, 2_000
    shipped: list[tuple[User, str]] = []
    for _ in range(count):
        seller, buyer = register(api, "seller"), register(api, "buyer")
        fund(api, buyer, price)
        listing = published_listing(api, seller, price, creator_id=creator.user_id, royalty_bps=1_000)
        order = api.post("/orders", headers=buyer.headers, json={"listing_id": listing}).json()["order_id"]
        assert api.post(f"/orders/{order}/ship", headers=seller.headers, json={}).status_code == 200
        shipped.append((buyer, order))

    answers = together(count, lambda n: api.post(f"/orders/{shipped[n][1]}/confirm-delivery",
                                                 headers=shipped[n][0].headers))

    assert [a.status_code for a in answers] == [200] * count, [a.text for a in answers if a.status_code != 200]
    assert balances(marketplace, creator.user_id) == (count * price * 1_000 // 10_000, 0)
    assert all(balances(marketplace, buyer.user_id) == (0, 0) for buyer, _ in shipped)


def test_concurrent_orders_on_one_listing_exactly_one_holds_funds_the_others_are_told_it_is_sold(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    seller, price = register(api, "seller"), 3_000
    buyers = [register(api, "buyer") for _ in range(8)]
    for buyer in buyers:
        fund(api, buyer, 5_000)
    listing = published_listing(api, seller, price)

    answers = together(len(buyers), lambda n: api.post("/orders", headers=buyers[n].headers,
                                                       json={"listing_id": listing}))

    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 7, [a.text for a in answers]
    refusals = {a.json()["error"]["code"] for a in answers if a.status_code == 409}
    assert refusals == {"listing.sold"}
    held = [balances(marketplace, buyer.user_id) for buyer in buyers]
    assert sorted(held) == [(2_000, 3_000)] + [(5_000, 0)] * 7
    winner = next(n for n, a in enumerate(answers) if a.status_code == 201)
    assert held[winner] == (2_000, 3_000)


def test_concurrent_registrations_of_one_email_one_account_the_rest_email_taken(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    email = f"twin-{uuid.uuid4().hex[:10]}@example.com"

    answers = together(6, lambda n: api.post("/users", json={
        "email": email, "password": f"{PASSWORD}-{n}", "display_name": f"Twin {n}", "role": "buyer"}))

    assert sorted(a.status_code for a in answers) == [201] + [409] * 5, [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"user.email_taken"}
    winner = next(n for n, a in enumerate(answers) if a.status_code == 201)
    logins = [api.post("/auth/token", json={"email": email, "password": f"{PASSWORD}-{n}"}).status_code
              for n in range(6)]
    assert logins == [200 if n == winner else 401 for n in range(6)]
    # The one key stored is the winner's: their profile decrypts (losers' keys were never committed).
    user = marketplace.repository.get(user_id_for(marketplace, email))
    assert isinstance(user, UserAggregate) and user.version == 1
    assert marketplace.vault.decrypt(user.id, user.encrypted_profile or "")["display_name"] == f"Twin {winner}"
