"""Schemas of TrustScore events and commands."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from schemas import rules
from schemas.base import CommandSchema, CreatedEventSchema, EventSchema, Reference

SignalKindName = Literal["review", "completed_order", "dispute_outcome", "fraud_flag", "kyc_verified"]


class _TrustEvent(EventSchema):
    aggregate: ClassVar[str] = "trust"


class TrustScoreStarted(CreatedEventSchema):
    """Trust tracking started for a user."""

    schema_name: ClassVar[str] = "TrustScoreStarted"
    event_type: ClassVar[str] = "TrustScore.Started"
    aggregate: ClassVar[str] = "trust"

    user_id: UUID
    formula_version: int = Field(ge=1)
    score: int = Field(ge=0, le=1000)


class TrustSignalRecorded(_TrustEvent):
    """A signal about a user was recorded."""

    schema_name: ClassVar[str] = "TrustSignalRecorded"
    event_type: ClassVar[str] = "TrustScore.SignalRecorded"

    kind: SignalKindName
    ref: str
    at: AwareDatetime
    stars: int | None = Field(ge=1, le=5)
    outcome: Literal["won", "lost"] | None


class TrustScoreRecomputed(_TrustEvent):
    """The score was recomputed with a formula version."""

    schema_name: ClassVar[str] = "TrustScoreRecomputed"
    event_type: ClassVar[str] = "TrustScore.ScoreRecomputed"

    score: int = Field(ge=0, le=1000)
    formula_version: int = Field(ge=1)
    signal_count: int = Field(ge=0)


class RecordTrustSignal(CommandSchema):
    """Record a signal about a user: reviews need stars 1..5, dispute outcomes need won/lost."""

    model_config = ConfigDict(json_schema_extra=rules.all_of(
        rules.given_only_when("stars", "kind", "review"), rules.given_only_when("outcome", "kind", "dispute_outcome")))
    schema_name: ClassVar[str] = "RecordTrustSignal"

    user_id: UUID
    kind: SignalKindName
    ref: Reference
    at: AwareDatetime
    stars: int | None = Field(default=None, ge=1, le=5)
    outcome: Literal["won", "lost"] | None = None

    @model_validator(mode="after")
    def _details_fit_kind(self) -> RecordTrustSignal:
        if (self.kind == "review") != (self.stars is not None):
            raise ValueError("stars are given for reviews and only for reviews")
        if (self.kind == "dispute_outcome") != (self.outcome is not None):
            raise ValueError("outcome is given for dispute outcomes and only for them")
        return self


EVENTS: tuple[type[EventSchema], ...] = (TrustScoreStarted, TrustSignalRecorded, TrustScoreRecomputed)
COMMANDS: tuple[type[CommandSchema], ...] = (RecordTrustSignal,)
