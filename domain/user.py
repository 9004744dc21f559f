"""User: a registered account with a role; personal data only as ciphertext (crypto-shredding).

Decisions:
- Personal data (name, address, email...) is encrypted OUTSIDE the domain with a per-user key named
  `key_id`; events carry only `encrypted_profile` (ciphertext). `forget` records that the key was destroyed:
  the immutable log keeps ciphertext nobody can read any more.
- `email_hash` is a keyed hash (HMAC with a platform secret, computed outside) used to find an account by
  email; read models drop it when the user is forgotten.
- `credential_hash` (argon2, computed outside) is kept on `registered`/`credential_changed` events. It is
  a credential, not personal data: it reveals nothing without a brute-force attack and is needed for
  login; a forgotten user can no longer log in (`check_active`), whatever hash the log still holds.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.chain import ChainedAggregate
from domain.errors import DomainError, check_aware


class Role(StrEnum):
    """What a user may do on the platform."""

    ADMIN = "admin"
    SELLER = "seller"
    BUYER = "buyer"
    AUDITOR = "auditor"


class UserError(DomainError):
    """A user rule was broken."""

    code = "user.error"


class UserForgottenError(UserError):
    """The user was forgotten: their data is gone and the account is closed."""

    code = "user.forgotten"


class InvalidUserError(UserError):
    """A user field is malformed."""

    code = "user.invalid"


class SameRoleError(UserError):
    """The user already has this role."""

    code = "user.same_role"


def check_role(role: Role | str) -> Role:
    """Parse a role name."""
    try:
        return Role(role)
    except ValueError as exc:
        raise InvalidUserError(f"unknown role {role!r}") from exc


def check_ciphertext(encrypted_profile: str, key_id: str) -> None:
    """The domain stores ciphertext and the key's name, never plaintext; both must be present."""
    if not encrypted_profile or not key_id:
        raise InvalidUserError("encrypted_profile and key_id are required")


class User(ChainedAggregate):
    """A platform account."""

    class Event(ChainedAggregate.Event):
        """Base class of user events."""

    class Registered(Event, ChainedAggregate.Created):
        """A user registered (profile encrypted with the per-user key `key_id`)."""

        role: str
        email_hash: str
        encrypted_profile: str
        key_id: str
        credential_hash: str

    def __init__(self, role: str, email_hash: str, encrypted_profile: str, key_id: str,
                 credential_hash: str) -> None:
        self.role = Role(role)
        self.email_hash = email_hash
        self.encrypted_profile: str | None = encrypted_profile
        self.key_id = key_id
        self.credential_hash: str | None = credential_hash
        self.forgotten = False

    @classmethod
    def register(cls, *, user_id: UUID, role: Role | str, email_hash: str, encrypted_profile: str,
                 key_id: str, credential_hash: str, now: datetime) -> User:
        """Register an account."""
        check_aware(now)
        role = check_role(role)
        check_ciphertext(encrypted_profile, key_id)
        if not email_hash or not credential_hash:
            raise InvalidUserError("email_hash and credential_hash are required")
        return cls._create_chained(cls.Registered, user_id, now, role=role.value, email_hash=email_hash,
                                   encrypted_profile=encrypted_profile, key_id=key_id,
                                   credential_hash=credential_hash)

    def check_active(self) -> None:
        """A forgotten user can do nothing and nothing can be done to them."""
        if self.forgotten:
            raise UserForgottenError(user_id=self.id)

    class RoleChanged(Event):
        """An admin changed the user's role."""

        role: str
        changed_by: UUID

        def apply(self, aggregate: User) -> None:
            aggregate.role = Role(self.role)

    def change_role(self, *, role: Role | str, changed_by: UUID, now: datetime) -> None:
        """Give the user another role (the caller checks `changed_by` is an admin)."""
        check_aware(now)
        self.check_active()
        role = check_role(role)
        if role == self.role:
            raise SameRoleError(user_id=self.id, role=role)
        self._trigger(self.RoleChanged, now, role=role.value, changed_by=changed_by)

    class ProfileUpdated(Event):
        """The user's profile was replaced by new ciphertext (possibly under a rotated key)."""

        encrypted_profile: str
        key_id: str

        def apply(self, aggregate: User) -> None:
            aggregate.encrypted_profile = self.encrypted_profile
            aggregate.key_id = self.key_id

    def update_profile(self, *, encrypted_profile: str, key_id: str, now: datetime) -> None:
        """Store a new encrypted profile."""
        check_aware(now)
        self.check_active()
        check_ciphertext(encrypted_profile, key_id)
        self._trigger(self.ProfileUpdated, now, encrypted_profile=encrypted_profile, key_id=key_id)

    class CredentialChanged(Event):
        """The user's password changed (new argon2 hash)."""

        credential_hash: str

        def apply(self, aggregate: User) -> None:
            aggregate.credential_hash = self.credential_hash

    def change_credential(self, *, credential_hash: str, now: datetime) -> None:
        """Store a new password hash."""
        check_aware(now)
        self.check_active()
        if not credential_hash:
            raise InvalidUserError("credential_hash is required")
        self._trigger(self.CredentialChanged, now, credential_hash=credential_hash)

    class Forgotten(Event):
        """The user's key `key_id` was destroyed: their ciphertext can never be read again."""

        key_id: str

        def apply(self, aggregate: User) -> None:
            aggregate.forgotten = True
            aggregate.encrypted_profile = None
            aggregate.credential_hash = None

    def forget(self, *, now: datetime) -> None:
        """Record that the user's key was destroyed (the caller destroys it in the key store first)."""
        check_aware(now)
        self.check_active()
        self._trigger(self.Forgotten, now, key_id=self.key_id)
