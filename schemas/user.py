"""Schemas of User events and commands.

Events carry ciphertext only. `credential_hash` is listed in `redacted_fields`: the relay publishes it
as null (consumers have no use for password hashes); such events are verified from the store.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.base import SPACE_CLASS, CommandSchema, CreatedEventSchema, EventSchema, Trim, solid_pattern, trim_spaces

RoleName = Literal["admin", "seller", "buyer", "auditor"]
_NOT_AT_OR_SPACE = f"[^@{SPACE_CLASS}]+"
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=(
        f"^[{SPACE_CLASS}]*{_NOT_AT_OR_SPACE}@{_NOT_AT_OR_SPACE}\\.{_NOT_AT_OR_SPACE}[{SPACE_CLASS}]*$"
    )),
    AfterValidator(lambda email: trim_spaces(email).lower()),
]
Password = Annotated[str, StringConstraints(min_length=12, max_length=256)]
DisplayName = Annotated[str, StringConstraints(max_length=100, pattern=solid_pattern(1)), Trim]
Address = Annotated[str, StringConstraints(max_length=500), Trim]


class _UserEvent(EventSchema):
    aggregate: ClassVar[str] = "user"


class UserRegistered(CreatedEventSchema):
    """A user registered (profile as ciphertext under the per-user key)."""

    schema_name: ClassVar[str] = "UserRegistered"
    event_type: ClassVar[str] = "User.Registered"
    aggregate: ClassVar[str] = "user"
    redacted_fields: ClassVar[frozenset[str]] = frozenset({"credential_hash"})

    role: RoleName
    email_hash: str
    encrypted_profile: str
    key_id: str
    credential_hash: str | None = Field(description="argon2 hash; published as null")


class UserRoleChanged(_UserEvent):
    """An admin changed the user's role."""

    schema_name: ClassVar[str] = "UserRoleChanged"
    event_type: ClassVar[str] = "User.RoleChanged"

    role: RoleName
    changed_by: UUID


class UserProfileUpdated(_UserEvent):
    """New profile ciphertext."""

    schema_name: ClassVar[str] = "UserProfileUpdated"
    event_type: ClassVar[str] = "User.ProfileUpdated"

    encrypted_profile: str
    key_id: str


class UserCredentialChanged(_UserEvent):
    """The password changed."""

    schema_name: ClassVar[str] = "UserCredentialChanged"
    event_type: ClassVar[str] = "User.CredentialChanged"
    redacted_fields: ClassVar[frozenset[str]] = frozenset({"credential_hash"})

    credential_hash: str | None = Field(description="argon2 hash; published as null")


class UserForgotten(_UserEvent):
    """The user's key was destroyed; their data is unreadable for good."""

    schema_name: ClassVar[str] = "UserForgotten"
    event_type: ClassVar[str] = "User.Forgotten"

    key_id: str


class RegisterUser(CommandSchema):
    """Create an account as a buyer or seller (admins and auditors are appointed with ChangeUserRole)."""

    schema_name: ClassVar[str] = "RegisterUser"

    email: Email
    password: Password
    display_name: DisplayName
    role: Literal["seller", "buyer"] = "buyer"
    address: Address | None = None


class ChangeUserRole(CommandSchema):
    """An admin gives a user another role."""

    schema_name: ClassVar[str] = "ChangeUserRole"

    user_id: UUID
    role: RoleName


class UpdateProfile(CommandSchema):
    """Change your personal data; omitted fields stay as they are."""

    schema_name: ClassVar[str] = "UpdateProfile"

    display_name: DisplayName | None = None
    email: Email | None = None
    address: Address | None = None

    @model_validator(mode="after")
    def _something_changes(self) -> UpdateProfile:
        if self.display_name is None and self.email is None and self.address is None:
            raise ValueError("give at least one of display_name, email, address")
        return self


class ChangePassword(CommandSchema):
    """Change your password."""

    schema_name: ClassVar[str] = "ChangePassword"

    current_password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    new_password: Password


class ForgetUser(CommandSchema):
    """Erase a user's personal data for good (destroys their key)."""

    schema_name: ClassVar[str] = "ForgetUser"

    user_id: UUID


EVENTS: tuple[type[EventSchema], ...] = (
    UserRegistered, UserRoleChanged, UserProfileUpdated, UserCredentialChanged, UserForgotten,
)
COMMANDS: tuple[type[CommandSchema], ...] = (
    RegisterUser, ChangeUserRole, UpdateProfile, ChangePassword, ForgetUser,
)
