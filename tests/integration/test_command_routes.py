"""The command routes test_command_api.py leaves out, over real HTTP on the real store: withdrawals, role
change, forget, price change, enrichment, suspension and trust signals, each with who may call it and
what bad input gets. Every refused request is checked on its own: it appends nothing naming the test's ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from commands.application import Marketplace
from domain.listing import Listing
from domain.wallet import wallet_id_for
from schemas.base import MAX_MINOR_UNITS
from tests.integration.test_command_api import (
    PASSWORD,
    User,
    _appended_mentioning,
    _email,
    admin,
    balances,
    fund,
    published_listing,
    register,
)

pytestmark = pytest.mark.integration
__all__ = ["admin"]  # the fixture, shared with test_command_api

Send = Callable[[], httpx.Response]
NOW = datetime.now(UTC).isoformat()


def ids_of(*users: User, listing: str | None = None) -> set[str]:
    """The ids a refused request must not get an event appended about: users, their EUR wallets, a listing."""
    found = {u.user_id for u in users} | {str(wallet_id_for(uuid.UUID(u.user_id), "EUR")) for u in users}
    return found | ({listing} if listing else set())


def refused(app: Marketplace, ours: set[str], send: Send, status: int, code: str) -> httpx.Response:
    """Send one request; it must be refused with `status` and `code` and append nothing about `ours`."""
    before = app.recorder.max_notification_id() or 0
    response = send()
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    assert _appended_mentioning(app, before, ours) == [], (code, response.text)
    return response


def money(amount: object, currency: str = "EUR") -> dict[str, object]:
    return {"amount": amount, "currency": currency}


def test_withdrawals_pay_out_available_money_to_its_owner_or_an_admin(
    api: httpx.Client, marketplace: Marketplace, admin: User
) -> None:
    buyer, other = register(api, "buyer"), register(api, "buyer")
    fund(api, buyer, 1_000)
    url = f"/wallets/{buyer.user_id}/withdrawals"

    own = api.post(url, headers=buyer.headers, json={"amount": money(300), "reference": "payout-1"})
    by_admin = api.post(url, headers=admin.headers, json={"amount": money(200), "reference": "payout-2"})

    assert own.status_code == 200 and own.json()["available"] == 700, own.text
    assert by_admin.status_code == 200 and by_admin.json()["available"] == 500
    ours = ids_of(buyer, other)
    for send, status, code in [
        (lambda: api.post(url, headers=other.headers, json={"amount": money(1), "reference": "r"}),
         403, "auth.forbidden"),
        (lambda: api.post(url, json={"amount": money(1), "reference": "r"}), 401, "auth.missing_token"),
        (lambda: api.post(url, headers=buyer.headers, json={"amount": money(501), "reference": "r"}),
         409, "wallet.insufficient_funds"),
        (lambda: api.post(url, headers=buyer.headers, json={"amount": money(0), "reference": "r"}),
         422, "request.invalid"),
        (lambda: api.post(url, headers=buyer.headers, json={"amount": money(MAX_MINOR_UNITS + 1), "reference": "r"}),
         422, "request.invalid"),
        (lambda: api.post(url, headers=buyer.headers, json={"amount": money(1, "eur"), "reference": "r"}),
         422, "request.invalid"),
        (lambda: api.post(url, headers=buyer.headers, json={"amount": money(1)}), 422, "request.invalid"),
        (lambda: api.post(url, headers=buyer.headers, json={"amount": money(1, "USD"), "reference": "r"}),
         409, "wallet.insufficient_funds"),  # no USD wallet: nothing available in USD
    ]:
        refused(marketplace, ours, send, status, code)
    assert balances(marketplace, buyer.user_id) == (500, 0)


def test_only_admins_change_roles_and_the_old_tokens_go(
    api: httpx.Client, marketplace: Marketplace, admin: User
) -> None:
    buyer, seller = register(api, "buyer"), register(api, "seller")
    url = f"/users/{buyer.user_id}/role"
    ours = ids_of(buyer, seller)
    for send, status, code in [
        (lambda: api.post(url, headers=buyer.headers, json={"role": "admin"}), 403, "auth.forbidden"),
        (lambda: api.post(url, headers=seller.headers, json={"role": "seller"}), 403, "auth.forbidden"),
        (lambda: api.post(url, json={"role": "seller"}), 401, "auth.missing_token"),
        (lambda: api.post(url, headers=admin.headers, json={"role": "king"}), 422, "request.invalid"),
        (lambda: api.post(url, headers=admin.headers, json={}), 422, "request.invalid"),
        (lambda: api.post(url, headers=admin.headers, json={"role": "buyer"}), 409, "user.same_role"),
        (lambda: api.post(f"/users/{uuid.uuid4()}/role", headers=admin.headers, json={"role": "seller"}),
         404, "domain.not_found"),
    ]:
        refused(marketplace, ours, send, status, code)

    changed = api.post(url, headers=admin.headers, json={"role": "seller"})

    assert changed.status_code == 200 and changed.json()["role"] == "seller", changed.text
    # The old token named the old role: it is refused; a new login carries the new one.
    stale = api.post("/listings", headers=buyer.headers, json={
        "kind": "goods", "title": "Lamp", "category": "lamps", "price": money(100)})
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "auth.token_revoked"


def test_forget_is_for_the_user_or_an_admin_and_ends_the_account(
    api: httpx.Client, marketplace: Marketplace, admin: User
) -> None:
    email = _email("buyer")
    created = api.post("/users", json={"email": email, "password": PASSWORD, "display_name": "Ann", "role": "buyer"})
    token = api.post("/auth/token", json={"email": email, "password": PASSWORD}).json()
    user = User(created.json()["user_id"], {"Authorization": f"Bearer {token['access_token']}"})
    other = register(api, "buyer")
    url = f"/users/{user.user_id}/forget"
    ours = ids_of(user, other)
    refused(marketplace, ours, lambda: api.post(url, headers=other.headers), 403, "auth.forbidden")
    refused(marketplace, ours, lambda: api.post(url), 401, "auth.missing_token")
    refused(marketplace, ours, lambda: api.post(f"/users/{uuid.uuid4()}/forget", headers=admin.headers),
            404, "domain.not_found")

    forgotten = api.post(url, headers=user.headers)

    assert forgotten.status_code == 200, forgotten.text
    assert not marketplace.vault.has_key(uuid.UUID(user.user_id))
    login = api.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401 and login.json()["error"]["code"] == "auth.invalid_credentials"
    refused(marketplace, ours, lambda: api.post(url, headers=user.headers), 401, "auth.token_revoked")
    refused(marketplace, ours, lambda: api.post(url, headers=admin.headers), 409, "user.forgotten")
    refused(marketplace, ours, lambda: api.post(f"/wallets/{user.user_id}/deposits", headers=admin.headers,
                                                json={"amount": money(5), "reference": "r"}), 409, "user.forgotten")


def test_a_price_change_is_for_the_seller_in_the_same_currency(api: httpx.Client, marketplace: Marketplace) -> None:
    seller, rival = register(api, "seller"), register(api, "seller")
    listing = published_listing(api, seller, 2_000)
    url = f"/listings/{listing}/price"
    ours = ids_of(seller, rival, listing=listing)

    changed = api.post(url, headers={**seller.headers, "If-Match": "2"}, json={"price": money(1_500)})

    assert changed.status_code == 200 and changed.json()["version"] == 3, changed.text
    stored: object = marketplace.repository.get(uuid.UUID(listing))
    assert isinstance(stored, Listing) and stored.price.amount == 1_500
    for send, status, code in [
        (lambda: api.post(url, headers=rival.headers, json={"price": money(1)}), 403, "listing.not_owner"),
        (lambda: api.post(url, json={"price": money(1)}), 401, "auth.missing_token"),
        (lambda: api.post(url, headers=seller.headers, json={"price": money(1, "USD")}),
         409, "listing.currency_change"),
        (lambda: api.post(url, headers={**seller.headers, "If-Match": "2"}, json={"price": money(1)}),
         409, "version.conflict"),
        (lambda: api.post(url, headers=seller.headers, json={"price": money(-1)}), 422, "request.invalid"),
        (lambda: api.post(url, headers=seller.headers, json={"price": money(MAX_MINOR_UNITS + 1)}),
         422, "request.invalid"),
        (lambda: api.post(url, headers=seller.headers, json={"price": money(1), "title": "x"}),
         422, "request.invalid"),
        (lambda: api.post(f"/listings/{uuid.uuid4()}/price", headers=seller.headers, json={"price": money(1)}),
         404, "domain.not_found"),
    ]:
        refused(marketplace, ours, send, status, code)
    api.post(f"/listings/{listing}/withdraw", headers=seller.headers)
    refused(marketplace, ours, lambda: api.post(url, headers=seller.headers, json={"price": money(9)}),
            409, "listing.not_editable")


def test_enrichment_is_recorded_by_admins_only_and_scores_stay_within_0_and_1(
    api: httpx.Client, marketplace: Marketplace, admin: User
) -> None:
    seller = register(api, "seller")
    listing = published_listing(api, seller, 900)
    url = f"/listings/{listing}/enrichment"
    body = {"model_id": "minilm", "model_version": "1", "embedding_ref": "emb-1", "condition_score": 0.75,
            "image_hashes": ["h1"], "quality_score": 0.5}
    ours = ids_of(seller, listing=listing)
    for send, status, code in [
        (lambda: api.post(url, headers=seller.headers, json=body), 403, "auth.forbidden"),
        (lambda: api.post(url, json=body), 401, "auth.missing_token"),
        (lambda: api.post(url, headers=admin.headers, json={**body, "condition_score": 1.5}), 422, "request.invalid"),
        (lambda: api.post(url, headers=admin.headers, json={**body, "quality_score": -0.1}), 422, "request.invalid"),
        (lambda: api.post(url, headers=admin.headers, json={**body, "model_id": ""}), 422, "request.invalid"),
        (lambda: api.post(url, headers=admin.headers, json={**body, "image_hashes": ["h"] * 51}),
         422, "request.invalid"),
        (lambda: api.post(f"/listings/{uuid.uuid4()}/enrichment", headers=admin.headers, json=body),
         404, "domain.not_found"),
    ]:
        refused(marketplace, ours, send, status, code)

    enriched = api.post(url, headers=admin.headers, json=body)

    assert enriched.status_code == 200, enriched.text
    stored: object = marketplace.repository.get(uuid.UUID(listing))
    assert isinstance(stored, Listing)
    assert stored.enrichment == {key: body[key] for key in ("model_id", "model_version", "embedding_ref",
                                                          "condition_score", "image_hashes", "quality_score")}


def test_only_admins_suspend_and_a_suspended_listing_sells_nothing(
    api: httpx.Client, marketplace: Marketplace, admin: User
) -> None:
    seller, buyer = register(api, "seller"), register(api, "buyer")
    fund(api, buyer, 5_000)
    listing = published_listing(api, seller, 1_000)
    url = f"/listings/{listing}/suspend"
    ours = ids_of(seller, buyer, listing=listing)
    for send, status, code in [
        (lambda: api.post(url, headers=seller.headers, json={"reason": "fraud"}), 403, "auth.forbidden"),
        (lambda: api.post(url, headers=buyer.headers, json={"reason": "fraud"}), 403, "auth.forbidden"),
        (lambda: api.post(url, json={"reason": "fraud"}), 401, "auth.missing_token"),
        (lambda: api.post(url, headers=admin.headers, json={}), 422, "request.invalid"),
        (lambda: api.post(url, headers=admin.headers, json={"reason": "   "}), 422, "request.invalid"),
        (lambda: api.post(f"/listings/{uuid.uuid4()}/suspend", headers=admin.headers, json={"reason": "fraud"}),
         404, "domain.not_found"),
    ]:
        refused(marketplace, ours, send, status, code)

    suspended = api.post(url, headers=admin.headers, json={"reason": "reported as counterfeit"})

    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended", suspended.text
    refused(marketplace, ours, lambda: api.post("/orders", headers=buyer.headers, json={"listing_id": listing}),
            409, "listing.not_published")
    assert balances(marketplace, buyer.user_id) == (5_000, 0)


def test_trust_signals_are_recorded_by_admins_with_the_fields_their_kind_needs(
    api: httpx.Client, marketplace: Marketplace, admin: User
) -> None:
    seller = register(api, "seller")
    url = f"/trust/{seller.user_id}/signals"
    review = {"kind": "review", "ref": f"order-{uuid.uuid4().hex[:8]}", "at": NOW, "stars": 5}

    first = api.post(url, headers=admin.headers, json=review)

    # Formula 1: 500 + (5 - 3) * 100 * 1/(1 + 5) for one five-star review, rounded down.
    assert first.status_code == 200 and first.json()["score"] == 533, first.text
    trust_id = first.json()["aggregate_id"]
    ours = ids_of(seller) | {trust_id}
    for send, status, code in [
        (lambda: api.post(url, headers=seller.headers, json={**review, "ref": "x1"}), 403, "auth.forbidden"),
        (lambda: api.post(url, json={**review, "ref": "x2"}), 401, "auth.missing_token"),
        (lambda: api.post(url, headers=admin.headers, json=review), 409, "trust.duplicate_signal"),
        (lambda: api.post(url, headers=admin.headers, json={**review, "ref": "x3", "stars": 6}),
         422, "request.invalid"),
        (lambda: api.post(url, headers=admin.headers, json={"kind": "review", "ref": "x4", "at": NOW}),
         422, "request.invalid"),  # a review needs stars
        (lambda: api.post(url, headers=admin.headers, json={**review, "ref": "x5", "kind": "fraud_flag"}),
         422, "request.invalid"),  # stars only on reviews
        (lambda: api.post(url, headers=admin.headers, json={"kind": "dispute_outcome", "ref": "x6", "at": NOW}),
         422, "request.invalid"),  # a dispute outcome needs won/lost
        (lambda: api.post(url, headers=admin.headers, json={**review, "ref": "x7", "at": "2024-01-01T00:00:00"}),
         422, "request.invalid"),  # a time without its zone
        (lambda: api.post(url, headers=admin.headers, json={**review, "ref": "x8", "kind": "gossip"}),
         422, "request.invalid"),
        (lambda: api.post(f"/trust/{uuid.uuid4()}/signals", headers=admin.headers, json={**review, "ref": "x9"}),
         404, "domain.not_found"),
    ]:
        refused(marketplace, ours, send, status, code)
    flagged = api.post(url, headers=admin.headers, json={"kind": "fraud_flag", "ref": "flag-1", "at": NOW})
    assert flagged.status_code == 200 and flagged.json()["score"] == 533 - 300, flagged.text  # a fraud flag costs 300
