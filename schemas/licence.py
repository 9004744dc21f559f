"""Schemas of Licence events and commands."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from schemas import rules
from schemas.base import CommandSchema, CreatedEventSchema, EventSchema, Reason

LicenceKindName = Literal["perpetual", "time_limited", "usage_metered"]


class _LicenceEvent(EventSchema):
    aggregate: ClassVar[str] = "licence"


class LicenceIssued(CreatedEventSchema):
    """A licence was issued."""

    schema_name: ClassVar[str] = "LicenceIssued"
    event_type: ClassVar[str] = "Licence.Issued"
    aggregate: ClassVar[str] = "licence"

    listing_id: UUID
    licensee_id: UUID
    kind: LicenceKindName
    expires_at: AwareDatetime | None
    quota: int | None
    order_id: UUID | None


class LicenceUsageRecorded(_LicenceEvent):
    """Usage was recorded."""

    schema_name: ClassVar[str] = "LicenceUsageRecorded"
    event_type: ClassVar[str] = "Licence.UsageRecorded"

    units: int = Field(gt=0)
    at: AwareDatetime


class LicenceRenewed(_LicenceEvent):
    """The licence got a later expiry or more quota."""

    schema_name: ClassVar[str] = "LicenceRenewed"
    event_type: ClassVar[str] = "Licence.Renewed"

    expires_at: AwareDatetime | None
    added_quota: int | None


class LicenceRevoked(_LicenceEvent):
    """The licence was revoked."""

    schema_name: ClassVar[str] = "LicenceRevoked"
    event_type: ClassVar[str] = "Licence.Revoked"

    reason: str


class LicenceExpired(_LicenceEvent):
    """The licence reached its expiry."""

    schema_name: ClassVar[str] = "LicenceExpired"
    event_type: ClassVar[str] = "Licence.Expired"


class IssueLicence(CommandSchema):
    """Issue a licence: time_limited needs expires_at, usage_metered needs quota, perpetual neither."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        rules.all_of(rules.is_("kind", "perpetual"), rules.absent("expires_at"), rules.absent("quota")),
        rules.all_of(rules.is_("kind", "time_limited"), rules.given("expires_at"), rules.absent("quota")),
        rules.all_of(rules.is_("kind", "usage_metered"), rules.absent("expires_at"), rules.given("quota")),
    ]})
    schema_name: ClassVar[str] = "IssueLicence"

    listing_id: UUID
    licensee_id: UUID
    kind: LicenceKindName
    expires_at: AwareDatetime | None = None
    quota: int | None = Field(default=None, gt=0, le=10**12)
    order_id: UUID | None = None

    @model_validator(mode="after")
    def _terms_fit_kind(self) -> IssueLicence:
        wants = {"perpetual": (False, False), "time_limited": (True, False), "usage_metered": (False, True)}
        if (self.expires_at is not None, self.quota is not None) != wants[self.kind]:
            raise ValueError(
                "time_limited needs expires_at only, usage_metered needs quota only, perpetual neither"
            )
        return self


class RecordUsage(CommandSchema):
    """Record use of a licence (`at` defaults to now)."""

    schema_name: ClassVar[str] = "RecordUsage"

    licence_id: UUID
    units: int = Field(gt=0, le=10**9)
    at: AwareDatetime | None = None


class RenewLicence(CommandSchema):
    """Extend a licence: a later expires_at (time_limited) or added_quota (usage_metered)."""

    model_config = ConfigDict(json_schema_extra=rules.exactly_one("expires_at", "added_quota"))
    schema_name: ClassVar[str] = "RenewLicence"

    licence_id: UUID
    expires_at: AwareDatetime | None = None
    added_quota: int | None = Field(default=None, gt=0, le=10**12)

    @model_validator(mode="after")
    def _exactly_one(self) -> RenewLicence:
        if (self.expires_at is None) == (self.added_quota is None):
            raise ValueError("give exactly one of expires_at or added_quota")
        return self


class RevokeLicence(CommandSchema):
    """Revoke a licence for good."""

    schema_name: ClassVar[str] = "RevokeLicence"

    licence_id: UUID
    reason: Reason


class ExpireLicence(CommandSchema):
    """Record that a time-limited licence has expired (sent by the expiry sweeper)."""

    schema_name: ClassVar[str] = "ExpireLicence"

    licence_id: UUID


EVENTS: tuple[type[EventSchema], ...] = (
    LicenceIssued, LicenceUsageRecorded, LicenceRenewed, LicenceRevoked, LicenceExpired,
)
COMMANDS: tuple[type[CommandSchema], ...] = (
    IssueLicence, RecordUsage, RenewLicence, RevokeLicence, ExpireLicence,
)
