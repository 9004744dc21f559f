"""Auditors read the public key, signed tree heads and proofs over HTTP, and check them offline."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from commands.application import Marketplace
from commands.audit.signing import check_proof_document
from commands.auth import TokenService, jwt_secret
from commands.handlers.users import register_user
from infra.settings import Settings
from schemas.user import RegisterUser
from tests.support import require_services


def token_headers(settings: Settings, marketplace: Marketplace, role: str) -> dict[str, str]:
    cmd = RegisterUser(email=f"{role}-{uuid.uuid4().hex[:10]}@example.com", password="a-long-password",
                       display_name=role)
    result = marketplace.run(lambda: register_user(marketplace, cmd, role=role))
    token = TokenService(jwt_secret(settings), 600).issue(result.aggregate_id, role)
    return {"Authorization": f"Bearer {token}"}


def signed_heads(api: httpx.Client, headers: dict[str, str], at_least: int, timeout_s: float = 30) -> list[Any]:
    """Heads as the relay signs them (every 1,000 events or 5 s), waiting for enough to exist."""
    deadline = time.monotonic() + timeout_s
    while True:
        heads = api.get("/audit/heads", headers=headers).json()
        if len(heads) >= at_least or time.monotonic() > deadline:
            return list(heads)
        time.sleep(0.5)


def test_auditor_gets_proofs_that_check_with_the_public_key_alone(
    settings: Settings, api: httpx.Client, marketplace: Marketplace
) -> None:
    require_services(settings, "postgres", "kafka")
    auditor = token_headers(settings, marketplace, "auditor")
    key = api.get("/audit/public-key").json()["public_key"]
    heads = signed_heads(api, auditor, at_least=1)
    assert heads, "the relay (started by ./run up) signed no tree head"
    head = heads[0]

    proof = api.get(f"/audit/proofs/inclusion/{head['last_notification_id']}", headers=auditor,
                    params={"head_size": head["tree_size"]})

    assert proof.status_code == 200, proof.text
    check_proof_document(proof.json(), head, key)
    tampered = {**proof.json(), "leaf_index": proof.json()["leaf_index"] - 1}
    try:
        check_proof_document(tampered, head, key)
    except Exception:  # noqa: BLE001 - any refusal is the point
        pass
    else:
        raise AssertionError("a proof for another leaf checked against the head")


def test_consistency_between_two_signed_heads(settings: Settings, api: httpx.Client, marketplace: Marketplace) -> None:
    auditor = token_headers(settings, marketplace, "auditor")
    key = api.get("/audit/public-key").json()["public_key"]
    token_headers(settings, marketplace, "buyer")  # one more event, so a newer head gets signed
    heads = signed_heads(api, auditor, at_least=2)
    assert len(heads) >= 2, "the relay signed fewer than two heads in 30 s"
    new, old = heads[0], heads[-1]

    proof = api.get("/audit/proofs/consistency", headers=auditor,
                    params={"old": old["tree_size"], "new": new["tree_size"]})

    assert proof.status_code == 200, proof.text
    check_proof_document(proof.json(), new, key, earlier_head=old)


def test_audit_trail_is_for_auditors_and_admins(
    settings: Settings, api: httpx.Client, marketplace: Marketplace
) -> None:
    buyer = token_headers(settings, marketplace, "buyer")
    auditor = token_headers(settings, marketplace, "auditor")

    assert api.get("/audit/heads").status_code == 401
    forbidden = api.get("/audit/heads", headers=buyer)
    unknown = api.get(f"/audit/proofs/inclusion/{uuid.uuid4()}:1", headers=auditor)

    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "auth.forbidden"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "audit.proof_unavailable"
