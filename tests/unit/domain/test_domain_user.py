"""User: roles, ciphertext-only profile, forgetting."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.user import InvalidUserError, Role, SameRoleError, User, UserForgottenError
from tests.unit.domain.support import ADMIN, T0, at

USER = UUID(int=400)


def _user() -> User:
    return User.register(user_id=USER, role="buyer", email_hash="e" * 64, encrypted_profile="ct:1",
                         key_id="key-400", credential_hash="$argon2id$v=19$x", now=T0)


def test_register_keeps_only_ciphertext() -> None:
    user = _user()
    assert user.role == Role.BUYER and user.encrypted_profile == "ct:1" and user.key_id == "key-400"
    event = user.collect_events()[0]
    assert isinstance(event, User.Registered) and event.credential_hash.startswith("$argon2")


def test_role_profile_credential_changes() -> None:
    user = _user()
    user.change_role(role="seller", changed_by=ADMIN, now=at(1))
    user.update_profile(encrypted_profile="ct:2", key_id="key-400b", now=at(2))
    user.change_credential(credential_hash="$argon2id$v=19$y", now=at(3))
    assert (user.role, user.encrypted_profile, user.key_id) == (Role.SELLER, "ct:2", "key-400b")
    with pytest.raises(SameRoleError):
        user.change_role(role="seller", changed_by=ADMIN, now=at(4))


def test_forget_destroys_access() -> None:
    user = _user()
    user.forget(now=at(1))
    assert user.forgotten and user.encrypted_profile is None and user.credential_hash is None
    forgotten = user.collect_events()[-1]
    assert isinstance(forgotten, User.Forgotten) and forgotten.key_id == "key-400"
    for action in (lambda: user.update_profile(encrypted_profile="ct", key_id="k", now=at(2)),
                   lambda: user.change_role(role="seller", changed_by=ADMIN, now=at(2)),
                   lambda: user.forget(now=at(2))):
        with pytest.raises(UserForgottenError) as info:
            action()
        assert info.value.code == "user.forgotten"


@pytest.mark.parametrize("overrides", [
    {"role": "king"}, {"encrypted_profile": ""}, {"key_id": ""}, {"credential_hash": ""}, {"email_hash": ""},
])
def test_register_refuses_bad_input(overrides: dict[str, str]) -> None:
    args = dict(role="buyer", email_hash="e", encrypted_profile="ct", key_id="k", credential_hash="h")
    args.update(overrides)
    with pytest.raises(InvalidUserError):
        User.register(user_id=USER, now=T0, **args)
