"""Users: register, appoint roles, forget (crypto-shredding), and log in."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from commands.application import Change, Marketplace
from commands.auth import AuthError, Principal, hash_password, password_matches
from commands.handlers import require_role, require_self_or_admin
from commands.personal_data import KeyChange
from domain.errors import DomainError
from domain.user import User
from schemas.user import ChangeUserRole, ForgetUser, RegisterUser

USER_NAMESPACE = uuid5(NAMESPACE_URL, "https://bazaar.local/users")


class EmailTakenError(DomainError):
    """An account with this e-mail address exists already."""

    code = "user.email_taken"


def user_id_for(app: Marketplace, email: str) -> UUID:
    """Users are keyed by their e-mail's keyed hash: a second registration is a version clash."""
    return uuid5(USER_NAMESPACE, app.email_hash(email))


def register_user(app: Marketplace, cmd: RegisterUser, role: str | None = None) -> Change:
    user_id = user_id_for(app, cmd.email)
    if app.exists(user_id):
        raise EmailTakenError("an account with this e-mail exists", email=cmd.email)
    key = KeyChange.new_key(user_id)  # stored with the Registered event, in its transaction
    profile = {"email": cmd.email, "display_name": cmd.display_name, "address": cmd.address}
    user = User.register(
        user_id=user_id, role=role or cmd.role, email_hash=app.email_hash(cmd.email),
        encrypted_profile=key.seal(profile), key_id=str(user_id),
        credential_hash=hash_password(cmd.password), now=app.now(),
    )
    return Change(user, body={"user_id": str(user_id), "role": user.role.value}, key_changes=(key,))


def change_user_role(app: Marketplace, actor: Principal, cmd: ChangeUserRole) -> Change:
    require_role(actor, "admin")
    user = app.load(User, cmd.user_id)
    user.change_role(role=cmd.role, changed_by=actor.user_id, now=app.now())
    app.token_generations.bump(user.id)  # tokens name the role: the old ones must go (before the commit: safe side)
    return Change(user, body={"role": user.role.value})


def forget_user(app: Marketplace, actor: Principal, cmd: ForgetUser) -> Change:
    if actor.user_id != cmd.user_id:
        require_role(actor, "admin")
    user = app.load(User, cmd.user_id)
    user.forget(now=app.now())
    app.token_generations.bump(user.id)  # before the commit: the safe side, as for a role change
    # The key is deleted in the transaction that appends Forgotten: a clash or a crash keeps both.
    return Change(user, key_changes=(KeyChange.shred(user.id),))


def revoke_tokens(app: Marketplace, actor: Principal, user_id: UUID) -> int:
    """Refuse every token issued to the user so far (the user or an admin); returns the new generation."""
    require_self_or_admin(actor, user_id)
    app.load(User, user_id)  # unknown users are a 404
    return app.token_generations.bump(user_id)


def authenticate(app: Marketplace, email: str, password: str) -> Principal:
    """The principal for valid credentials; the same error for unknown e-mail and wrong password."""
    user_id = user_id_for(app, email)
    user = app.repository.get(user_id) if app.exists(user_id) else None
    if not isinstance(user, User) or user.forgotten or not user.credential_hash:
        raise AuthError("auth.invalid_credentials", "e-mail or password is wrong")
    if not password_matches(user.credential_hash, password):
        raise AuthError("auth.invalid_credentials", "e-mail or password is wrong")
    return Principal(user.id, user.role.value)
