"""User handlers on the in-memory store: registration, roles, crypto-shredding and log-in."""

from __future__ import annotations

from uuid import uuid4

import pytest

from commands.auth import AuthError, Principal
from commands.handlers import users
from commands.handlers.users import EmailTakenError
from commands.personal_data import KeyShredded
from domain.errors import NotFoundError
from domain.user import Role, SameRoleError, User, UserForgottenError
from schemas.user import ChangeUserRole, ForgetUser, RegisterUser
from tests.unit.commands.support import PASSWORD, World


def test_register_user_keeps_only_ciphertext_and_a_keyed_hash_of_the_email(world: World) -> None:
    user_id = world.register("ada@example.org", role="seller")
    user = world.get(User, user_id)
    assert user_id == users.user_id_for(world.app, "ada@example.org") and user.role == Role.SELLER
    assert user.encrypted_profile is not None and "ada@example.org" not in user.encrypted_profile
    assert world.app.vault.decrypt(user_id, user.encrypted_profile)["email"] == "ada@example.org"
    assert user.email_hash == world.app.email_hash("ada@example.org")


def test_register_user_refuses_an_email_taken_in_any_case(world: World) -> None:
    world.register("ada@example.org")
    cmd = RegisterUser(email="ADA@Example.org", password=PASSWORD, display_name="Imposter")
    error = world.refuses(EmailTakenError, lambda: users.register_user(world.app, cmd))
    assert error.code == "user.email_taken"


def test_change_user_role_by_an_admin(world: World) -> None:
    user_id = world.register()
    result = world.run(lambda: users.change_user_role(world.app, world.admin, ChangeUserRole(user_id=user_id,
                                                                                             role="seller")))
    assert result.body == {"role": "seller"} and world.get(User, user_id).role == Role.SELLER


def test_change_user_role_is_refused_to_non_admins(world: World) -> None:
    user_id = world.register()
    cmd = ChangeUserRole(user_id=user_id, role="admin")
    world.forbidden(lambda: users.change_user_role(world.app, Principal(user_id, "buyer"), cmd))


def test_change_user_role_to_the_same_role_is_refused(world: World) -> None:
    user_id = world.register(role="buyer")
    cmd = ChangeUserRole(user_id=user_id, role="buyer")
    error = world.refuses(SameRoleError, lambda: users.change_user_role(world.app, world.admin, cmd))
    assert error.code == "user.same_role"


def test_change_user_role_of_an_unknown_user_is_not_found(world: World) -> None:
    cmd = ChangeUserRole(user_id=uuid4(), role="seller")
    world.refuses(NotFoundError, lambda: users.change_user_role(world.app, world.admin, cmd))


def test_forget_user_shreds_the_key_so_old_ciphertext_is_unreadable(world: World) -> None:
    user_id = world.register()
    ciphertext = world.get(User, user_id).encrypted_profile
    assert ciphertext is not None
    world.run(lambda: users.forget_user(world.app, Principal(user_id, "buyer"), ForgetUser(user_id=user_id)))
    user = world.get(User, user_id)
    assert user.forgotten and user.encrypted_profile is None and user.credential_hash is None
    with pytest.raises(KeyShredded):
        world.app.vault.decrypt(user_id, ciphertext)


def test_an_admin_may_forget_any_user(world: World) -> None:
    user_id = world.register()
    world.run(lambda: users.forget_user(world.app, world.admin, ForgetUser(user_id=user_id)))
    assert world.get(User, user_id).forgotten


def test_forget_user_is_refused_to_other_users(world: World) -> None:
    user_id = world.register()
    world.forbidden(lambda: users.forget_user(world.app, world.stranger,
                                                                   ForgetUser(user_id=user_id)))
    assert world.app.vault.decrypt(user_id, world.get(User, user_id).encrypted_profile or "")["display_name"] == "Ada"


def test_forget_user_of_an_unknown_user_is_not_found(world: World) -> None:
    world.refuses(NotFoundError, lambda: users.forget_user(world.app, world.admin, ForgetUser(user_id=uuid4())))


@pytest.mark.parametrize("command", ["forget", "change_role"])
def test_a_forgotten_user_can_be_neither_forgotten_nor_changed_again(world: World, command: str) -> None:
    user_id = world.register()
    world.run(lambda: users.forget_user(world.app, world.admin, ForgetUser(user_id=user_id)))
    act = {
        "forget": lambda: users.forget_user(world.app, world.admin, ForgetUser(user_id=user_id)),
        "change_role": lambda: users.change_user_role(world.app, world.admin,
                                                      ChangeUserRole(user_id=user_id, role="seller")),
    }[command]
    error = world.refuses(UserForgottenError, act)
    assert error.code == "user.forgotten"


def test_authenticate_answers_the_principal_for_the_right_password(world: World) -> None:
    user_id = world.register("ada@example.org", role="seller")
    assert users.authenticate(world.app, "ada@example.org", PASSWORD) == Principal(user_id, "seller")


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "forgotten"])
def test_authenticate_refuses_with_one_error_for_every_bad_credential(world: World, case: str) -> None:
    user_id = world.register("ada@example.org")
    email, password = "ada@example.org", PASSWORD
    if case == "wrong password":
        password = "not the password"
    elif case == "unknown email":
        email = "bob@example.org"
    else:
        world.run(lambda: users.forget_user(world.app, world.admin, ForgetUser(user_id=user_id)))
    with pytest.raises(AuthError) as info:
        users.authenticate(world.app, email, password)
    assert info.value.code == "auth.invalid_credentials"


@pytest.mark.parametrize("command", ["forget", "change_role"])
def test_forgetting_or_changing_a_role_refuses_the_users_earlier_tokens(world: World, command: str) -> None:
    user_id = world.register()
    before = world.app.token_generations.current(user_id)
    if command == "forget":
        world.run(lambda: users.forget_user(world.app, world.admin, ForgetUser(user_id=user_id)))
    else:
        cmd = ChangeUserRole(user_id=user_id, role="seller")
        world.run(lambda: users.change_user_role(world.app, world.admin, cmd))
    assert world.app.token_generations.current(user_id) == before + 1


@pytest.mark.parametrize("who", ["self", "admin"])
def test_revoke_tokens_bumps_the_generation_and_appends_nothing(world: World, who: str) -> None:
    user_id = world.register()
    actor = Principal(user_id, "buyer") if who == "self" else world.admin
    before, position = world.app.token_generations.current(user_id), world.position()
    assert users.revoke_tokens(world.app, actor, user_id) == before + 1
    assert world.app.token_generations.current(user_id) == before + 1 and world.position() == position


def test_revoke_tokens_of_another_user_is_refused(world: World) -> None:
    user_id = world.register()
    with pytest.raises(Exception) as info:  # noqa: PT011 - matched by code: the shared auth error
        users.revoke_tokens(world.app, world.stranger, user_id)
    assert getattr(info.value, "code", None) == "auth.forbidden"
    assert world.app.token_generations.current(user_id) == 0


def test_revoke_tokens_of_an_unknown_user_is_not_found(world: World) -> None:
    with pytest.raises(NotFoundError):
        users.revoke_tokens(world.app, world.admin, uuid4())
