"""Forgetting a user, changing their role and revoking their tokens refuse the old tokens at once, on both APIs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from commands.application import Marketplace
from infra.adapters.redis import make_redis
from infra.settings import Settings
from infra.tokens import AuthError, TokenGenerations, TokenVerifier, cache_key
from read_api.app import create_app as create_read_app
from read_api.config import ReadApiConfig
from tests.integration.test_command_api import PASSWORD, User, admin, fund, register  # noqa: F401 (fixture)
from tests.support import require_services


@pytest.fixture(scope="module")
def reads(settings: Settings) -> Iterator[TestClient]:
    require_services(settings, "postgres", "redis")
    app = create_read_app(settings, projection_topics={}, config=ReadApiConfig(rate_limit=None))
    with TestClient(app, base_url="http://testserver/v1") as client:
        yield client


def _login(api: httpx.Client, email: str) -> dict[str, str]:
    token = api.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def _deposit(api: httpx.Client, user_id: str, headers: dict[str, str]) -> httpx.Response:
    body = {"amount": {"amount": 100, "currency": "EUR"}, "reference": f"psp-{uuid.uuid4().hex[:8]}"}
    return api.post(f"/wallets/{user_id}/deposits", headers=headers, json=body)


def test_a_forgotten_users_token_is_refused_by_both_apis_and_their_wallet_takes_nothing(
    api: httpx.Client, reads: TestClient, admin: User, marketplace: Marketplace  # noqa: F811
) -> None:
    buyer = register(api, "buyer")
    fund(api, buyer, 500)
    assert reads.get(f"/wallets/{buyer.user_id}", headers=buyer.headers).status_code != 401
    before = marketplace.recorder.max_notification_id()

    assert api.post(f"/users/{buyer.user_id}/forget", headers=buyer.headers).status_code == 200
    by_old_token = _deposit(api, buyer.user_id, buyer.headers)
    read_by_old_token = reads.get(f"/wallets/{buyer.user_id}", headers=buyer.headers)
    by_admin = _deposit(api, buyer.user_id, admin.headers)

    assert by_old_token.status_code == 401 and _code(by_old_token) == "auth.token_revoked"
    assert read_by_old_token.status_code == 401 and read_by_old_token.json()["error"]["code"] == "auth.token_revoked"
    assert by_admin.status_code == 409 and _code(by_admin) == "user.forgotten"
    assert marketplace.recorder.max_notification_id() == before + 1  # the Forgotten event only


def test_a_role_change_refuses_the_tokens_naming_the_old_role(api: httpx.Client, admin: User) -> None:  # noqa: F811
    email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
    created = api.post("/users", json={"email": email, "password": PASSWORD, "display_name": "B", "role": "buyer"})
    user_id = created.json()["user_id"]
    old = _login(api, email)

    assert api.post(f"/users/{user_id}/role", headers=admin.headers, json={"role": "seller"}).status_code == 200
    refused = api.post("/listings", headers=old, json={
        "kind": "goods", "title": "Chair", "category": "home", "price": {"amount": 100, "currency": "EUR"}})
    fresh = api.post("/listings", headers=_login(api, email), json={
        "kind": "goods", "title": "Chair", "category": "home", "price": {"amount": 100, "currency": "EUR"}})

    assert refused.status_code == 401 and _code(refused) == "auth.token_revoked"
    assert fresh.status_code == 201


def test_revoking_tokens_logs_the_user_out_everywhere_but_not_others(
    api: httpx.Client, reads: TestClient, admin: User  # noqa: F811
) -> None:
    buyer, other = register(api, "buyer"), register(api, "buyer")

    by_other = api.post(f"/users/{buyer.user_id}/revoke-tokens", headers=other.headers)
    revoked = api.post(f"/users/{buyer.user_id}/revoke-tokens", headers=admin.headers)
    unknown = api.post(f"/users/{uuid.uuid4()}/revoke-tokens", headers=admin.headers)

    assert by_other.status_code == 403 and _code(by_other) == "auth.forbidden"
    assert revoked.status_code == 200 and revoked.json()["token_generation"] >= 1
    assert unknown.status_code == 404
    assert _deposit(api, buyer.user_id, buyer.headers).status_code == 401
    assert reads.get(f"/wallets/{buyer.user_id}", headers=buyer.headers).status_code == 401
    assert _deposit(api, other.user_id, other.headers).status_code == 200


def test_a_revoke_in_one_process_is_seen_at_once_by_another(settings: Settings) -> None:
    """Two verifiers, as two API processes would hold; each remembers decoded tokens, neither a generation."""
    require_services(settings, "postgres", "redis")
    first, second = TokenVerifier.from_settings(settings), TokenVerifier.from_settings(settings)
    user_id = uuid.uuid4()
    token = first.issue(user_id, "buyer")
    assert first.verify(token).user_id == second.verify(token).user_id == user_id

    TokenGenerations(settings).bump(user_id)

    for verifier in (first, second):
        with pytest.raises(AuthError) as refused:
            verifier.verify(token)
        assert refused.value.code == "auth.token_revoked"
    assert second.verify(second.issue(user_id, "buyer")).user_id == user_id


def test_the_generation_survives_a_lost_cache(settings: Settings) -> None:
    """PostgreSQL is the truth: a flushed Redis key is filled again from it, never reset to 0."""
    require_services(settings, "postgres", "redis")
    generations = TokenGenerations(settings)
    user_id = uuid.uuid4()
    assert generations.bump(user_id) == 1
    assert generations.bump(user_id) == 2
    make_redis(settings).delete(cache_key(user_id))  # the cache, lost

    assert generations.current(user_id) == 2
