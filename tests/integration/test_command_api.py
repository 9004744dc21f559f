"""The command API over real HTTP on the real PostgreSQL event store."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from commands.application import Marketplace
from commands.auth import TokenService, jwt_secret
from commands.handlers.users import register_user
from domain.wallet import PLATFORM_OWNER_ID, Wallet, wallet_id_for
from infra.settings import Settings
from schemas.base import MAX_MINOR_UNITS
from schemas.user import RegisterUser

PASSWORD = "a-long-enough-password"


@dataclass
class User:
    user_id: str
    headers: dict[str, str]


def _email(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:10]}@example.com"


def register(api: httpx.Client, role: str) -> User:
    email = _email(role)
    created = api.post("/users", json={"email": email, "password": PASSWORD, "display_name": role, "role": role})
    assert created.status_code == 201, created.text
    token = api.post("/auth/token", json={"email": email, "password": PASSWORD}).json()
    return User(token["user_id"], {"Authorization": f"Bearer {token['access_token']}"})


@pytest.fixture(scope="module")
def admin(settings: Settings, marketplace: Marketplace) -> User:
    cmd = RegisterUser(email=_email("admin"), password=PASSWORD, display_name="Admin")
    result = marketplace.run(lambda: register_user(marketplace, cmd, role="admin"))
    token = TokenService(jwt_secret(settings), 600).issue(result.aggregate_id, "admin")
    return User(str(result.aggregate_id), {"Authorization": f"Bearer {token}"})


def fund(api: httpx.Client, user: User, amount: int) -> None:
    body = {"amount": {"amount": amount, "currency": "EUR"}, "reference": f"psp-{uuid.uuid4().hex[:8]}"}
    response = api.post(f"/wallets/{user.user_id}/deposits", headers=user.headers, json=body)
    assert response.status_code == 200, response.text


def published_listing(api: httpx.Client, seller: User, price: int, **extra: Any) -> str:
    body = {"kind": "goods", "title": "Vintage camera", "description": "Works well", "category": "cameras",
            "price": {"amount": price, "currency": "EUR"}, **extra}
    listing_id = api.post("/listings", headers=seller.headers, json=body).json()["listing_id"]
    assert api.post(f"/listings/{listing_id}/publish", headers=seller.headers).status_code == 200
    return str(listing_id)


def balances(app: Marketplace, owner_id: str | uuid.UUID) -> tuple[int, int]:
    wallet = app.repository.get(wallet_id_for(uuid.UUID(str(owner_id)), "EUR"))
    assert isinstance(wallet, Wallet)
    return wallet.available.amount, wallet.held.amount


def platform_available(app: Marketplace) -> int:
    wallet_id = wallet_id_for(PLATFORM_OWNER_ID, "EUR")
    return balances(app, PLATFORM_OWNER_ID)[0] if wallet_id in app.repository else 0


def test_order_released_from_escrow_pays_seller_platform_and_creator(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    seller, buyer, creator = register(api, "seller"), register(api, "buyer"), register(api, "seller")
    fund(api, buyer, 10_000)
    listing = published_listing(api, seller, 2_500, creator_id=creator.user_id, royalty_bps=1_000)
    platform_before = platform_available(marketplace)

    placed = api.post("/orders", headers=buyer.headers, json={"listing_id": listing})
    assert placed.status_code == 201 and placed.json()["status"] == "funds_held"
    order = placed.json()["order_id"]
    assert balances(marketplace, buyer.user_id) == (7_500, 2_500)
    assert api.post(f"/orders/{order}/ship", headers=seller.headers, json={}).status_code == 200
    released = api.post(f"/orders/{order}/confirm-delivery", headers=buyer.headers)

    assert released.status_code == 200 and released.json()["status"] == "released"
    fee, royalty = 2_500 * 500 // 10_000, 2_500 * 1_000 // 10_000
    assert balances(marketplace, buyer.user_id) == (7_500, 0)
    assert balances(marketplace, seller.user_id) == (2_500 - fee - royalty, 0)
    assert balances(marketplace, creator.user_id) == (royalty, 0)
    assert platform_available(marketplace) - platform_before == fee


def test_cancelled_order_is_refunded_and_goods_go_back_on_sale(api: httpx.Client, marketplace: Marketplace) -> None:
    seller, buyer = register(api, "seller"), register(api, "buyer")
    fund(api, buyer, 5_000)
    listing = published_listing(api, seller, 3_000)
    order = api.post("/orders", headers=buyer.headers, json={"listing_id": listing}).json()["order_id"]

    cancelled = api.post(f"/orders/{order}/cancel", headers=buyer.headers, json={"reason": "changed my mind"})

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "refunded"
    assert balances(marketplace, buyer.user_id) == (5_000, 0)
    other = register(api, "buyer")
    fund(api, other, 3_000)
    assert api.post("/orders", headers=other.headers, json={"listing_id": listing}).status_code == 201


def test_only_admins_resolve_disputes(api: httpx.Client, marketplace: Marketplace, admin: User) -> None:
    seller, buyer = register(api, "seller"), register(api, "buyer")
    fund(api, buyer, 4_000)
    order = api.post("/orders", headers=buyer.headers,
                     json={"listing_id": published_listing(api, seller, 4_000)}).json()["order_id"]
    api.post(f"/orders/{order}/ship", headers=seller.headers, json={})
    opened = api.post(f"/orders/{order}/disputes", headers=buyer.headers, json={"reason": "never arrived"})
    assert opened.status_code == 200
    body = {"outcome": "refund", "note": "carrier lost it"}

    by_buyer = api.post(f"/orders/{order}/disputes/resolve", headers=buyer.headers, json=body)
    by_admin = api.post(f"/orders/{order}/disputes/resolve", headers=admin.headers, json=body)

    assert by_buyer.status_code == 403 and by_buyer.json()["error"]["code"] == "auth.forbidden"
    assert by_admin.status_code == 200 and by_admin.json()["status"] == "refunded"
    assert balances(marketplace, buyer.user_id) == (4_000, 0)


def test_concurrent_conflicting_commands_one_wins_the_rest_get_409(api: httpx.Client) -> None:
    seller = register(api, "seller")
    listing = api.post("/listings", headers=seller.headers, json={
        "kind": "dataset", "title": "Street images", "category": "vision", "price": {"amount": 900, "currency": "EUR"},
    }).json()["listing_id"]

    def revise(n: int) -> httpx.Response:
        return api.patch(f"/listings/{listing}", headers={**seller.headers, "If-Match": "1"},
                         json={"title": f"Street images take {n}"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(revise, range(20)))

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 19
    conflicts = [r.json()["error"] for r in responses if r.status_code == 409]
    assert all(c["code"] == "version.conflict" and c["details"]["current_version"] == 2 for c in conflicts)


def test_retried_idempotent_command_appends_once(api: httpx.Client, marketplace: Marketplace) -> None:
    buyer = register(api, "buyer")
    headers = {**buyer.headers, "Idempotency-Key": f"deposit-{uuid.uuid4()}"}
    body = {"amount": {"amount": 700, "currency": "EUR"}, "reference": "psp-retry"}

    first = api.post(f"/wallets/{buyer.user_id}/deposits", headers=headers, json=body)
    before = marketplace.recorder.max_notification_id()
    again = api.post(f"/wallets/{buyer.user_id}/deposits", headers=headers, json=body)
    reused = api.post(f"/wallets/{buyer.user_id}/deposits", headers=headers,
                      json={**body, "reference": "another"})

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency.key_reused"
    assert marketplace.recorder.max_notification_id() == before
    assert balances(marketplace, buyer.user_id) == (700, 0)


def test_bad_requests_get_machine_readable_4xx_and_append_nothing(
    api: httpx.Client, marketplace: Marketplace, settings: Settings
) -> None:
    seller, buyer = register(api, "seller"), register(api, "buyer")
    listing = published_listing(api, seller, 1_000)
    expired = TokenService(jwt_secret(settings), 60).issue(uuid.UUID(seller.user_id), "seller", now=time.time() - 3600)
    cases = [
        (lambda: api.post("/listings", headers=seller.headers, json={"title": "x"}), 422, "request.invalid"),
        (lambda: api.post("/listings", headers=seller.headers, content=b"{not json"), 422, "request.invalid"),
        (lambda: api.post("/orders", headers=buyer.headers, json={"listing_id": str(uuid.uuid4())}),
         404, "domain.not_found"),
        (lambda: api.post(f"/listings/{listing}/withdraw", headers=buyer.headers), 403, "listing.not_owner"),
        (lambda: api.post("/listings", headers=buyer.headers, json={
            "kind": "goods", "title": "Mine", "category": "c", "price": {"amount": 1, "currency": "EUR"}}),
         403, "auth.forbidden"),
        (lambda: api.post(f"/listings/{listing}/withdraw", headers={"Authorization": f"Bearer {expired}"}),
         401, "auth.token_expired"),
        (lambda: api.post(f"/listings/{listing}/withdraw"), 401, "auth.missing_token"),
        (lambda: api.post("/orders", headers=buyer.headers, json={"listing_id": listing}),
         409, "wallet.insufficient_funds"),
        (lambda: api.patch(f"/listings/{listing}", headers={**seller.headers, "If-Match": "abc"},
                           json={"title": "New"}),
         422, "request.invalid"),
        (lambda: api.post(f"/wallets/{buyer.user_id}/deposits", headers={**buyer.headers, "Idempotency-Key": ""},
                  json={"amount": {"amount": 1, "currency": "EUR"}, "reference": "r"}), 422, "request.invalid"),
        # The token is checked first: no token is a 401 whatever else is wrong with the request.
        (lambda: api.patch(f"/listings/{listing}", headers={"If-Match": "abc", "Idempotency-Key": ""}, content=b"{"),
         401, "auth.missing_token"),
        (lambda: api.post("/orders/not-a-uuid/cancel", json={"reason": 5}), 401, "auth.missing_token"),
    ]
    ours = {seller.user_id, buyer.user_id, listing, *(str(wallet_id_for(uuid.UUID(u.user_id), "EUR"))
                                                      for u in (seller, buyer))}
    for send, status, code in cases:  # the log is read around each request, not once after all of them
        before = marketplace.recorder.max_notification_id() or 0
        response = send()
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert _appended_mentioning(marketplace, before, ours) == [], (code, response.text)


def _appended_mentioning(app: Marketplace, after: int, ids: set[str]) -> list[tuple[str, int]]:
    """Events appended after a position that belong to or name one of the ids (the store is shared by others)."""
    found = []
    for note in app.recorder.select_notifications(start=after + 1, limit=10_000):
        state = note.state.decode(errors="replace")
        # Stored UUIDs may be written with or without hyphens: look for both spellings.
        if str(note.originator_id) in ids or any(i in state or i.replace("-", "") in state for i in ids):
            found.append((str(note.originator_id), note.originator_version))
    return found


def _deposit(api: httpx.Client, user: User, amount: object, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"amount": {"amount": amount, "currency": "EUR"}, "reference": f"psp-{uuid.uuid4().hex[:8]}"}
    return api.post(f"/wallets/{user.user_id}/deposits", headers=headers or user.headers, json=body)


def test_money_is_a_strict_bounded_integer_and_balances_stay_within_the_bound(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    buyer = register(api, "buyer")
    for bad in (2**63, 10**30, 1e20, MAX_MINOR_UNITS + 1, "12", 12.5, True, None, 0, -1):
        refused = _deposit(api, buyer, bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "request.invalid"
    # JSON has one number type: 5.0 is the integer 5 (as the published JSON Schema's "integer" says).
    assert _deposit(api, buyer, MAX_MINOR_UNITS - 10).status_code == 200
    assert _deposit(api, buyer, 5.0).json()["available"] == MAX_MINOR_UNITS - 5
    over = _deposit(api, buyer, 6)

    assert over.status_code == 409 and over.json()["error"]["code"] == "wallet.balance_limit"
    assert _deposit(api, buyer, 5).status_code == 200
    assert balances(marketplace, buyer.user_id) == (MAX_MINOR_UNITS, 0)


def test_a_sale_that_would_overfill_the_sellers_wallet_is_refused_and_moves_nothing(
    api: httpx.Client, marketplace: Marketplace
) -> None:
    seller, buyer = register(api, "seller"), register(api, "buyer")
    fund(api, seller, MAX_MINOR_UNITS - 100)
    fund(api, buyer, 1_000)
    order = api.post("/orders", headers=buyer.headers,
                     json={"listing_id": published_listing(api, seller, 1_000)}).json()["order_id"]
    assert api.post(f"/orders/{order}/ship", headers=seller.headers, json={}).status_code == 200

    refused = api.post(f"/orders/{order}/confirm-delivery", headers=buyer.headers)

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "wallet.balance_limit"
    assert balances(marketplace, buyer.user_id) == (0, 1_000)
    assert balances(marketplace, seller.user_id) == (MAX_MINOR_UNITS - 100, 0)


def test_state_conflicts_answer_409(api: httpx.Client, admin: User) -> None:
    seller, buyer = register(api, "seller"), register(api, "buyer")
    fund(api, buyer, 2_000)
    order = api.post("/orders", headers=buyer.headers,
                     json={"listing_id": published_listing(api, seller, 2_000)}).json()["order_id"]

    early = api.post(f"/orders/{order}/confirm-delivery", headers=buyer.headers)
    api.post(f"/orders/{order}/ship", headers=seller.headers, json={})
    api.post(f"/orders/{order}/disputes", headers=buyer.headers, json={"reason": "broken"})
    body = {"outcome": "release", "note": "works"}
    first = api.post(f"/orders/{order}/disputes/resolve", headers=admin.headers, json=body)
    second = api.post(f"/orders/{order}/disputes/resolve", headers=admin.headers, json=body)

    assert early.status_code == 409 and early.json()["error"]["code"] == "order.invalid_transition"
    assert first.status_code == 200
    assert second.status_code == 409 and second.json()["error"]["code"] == "order.invalid_transition"
