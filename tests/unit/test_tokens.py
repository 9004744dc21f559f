"""Access tokens: verified claims are remembered, but expiry and tampering are checked on every use."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest

from infra.tokens import AuthError, TokenService


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenService("s" * 48, ttl_s=60)
    user = uuid4()
    token = tokens.issue(user, "buyer")
    assert tokens.verify(token).user_id == user
    assert tokens.verify(token).role == "buyer"  # from memory this time

    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(AuthError) as expired:
        tokens.verify(token)
    assert expired.value.code == "auth.token_expired"


def test_tampered_and_foreign_tokens_are_refused() -> None:
    tokens = TokenService("s" * 48, ttl_s=60)
    token = tokens.issue(uuid4(), "seller")
    tokens.verify(token)
    foreign = TokenService("t" * 48, ttl_s=60).issue(uuid4(), "admin")
    for bad in (token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], foreign, "not.a.token"):
        with pytest.raises(AuthError) as refused:
            tokens.verify(bad)
        assert refused.value.code == "auth.token_invalid"
