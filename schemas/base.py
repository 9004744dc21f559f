"""Base models and shared field types for published events and accepted commands."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

CURRENCY_PATTERN = r"^[A-Z]{3}$"
HASH_PATTERN = r"^[0-9a-f]{64}$"


def _check_currency(value: str) -> str:
    if not re.fullmatch(CURRENCY_PATTERN, value):
        raise ValueError(f"currency must be a 3-letter upper-case ISO 4217 code such as EUR, got {value!r}")
    return value


Currency = Annotated[
    str, AfterValidator(_check_currency), WithJsonSchema({"type": "string", "pattern": CURRENCY_PATTERN})
]
"""ISO 4217 code: three upper-case letters."""
MAX_MINOR_UNITS = 10**15
"""The largest amount of money Bazaar handles, in minor units: any amount, balance or escrow stays within it,
so that sums over thousands of them still fit a 64-bit integer (PostgreSQL bigint) on the read side."""
MinorUnits = Annotated[
    int,
    Field(strict=True, ge=0, le=MAX_MINOR_UNITS, description="integer minor units (e.g. cents): a balance or a fee"),
]
PositiveMinorUnits = Annotated[
    int,
    Field(strict=True, ge=1, le=MAX_MINOR_UNITS, description="integer minor units (e.g. cents) of an amount moved"),
]
BasisPoints = Annotated[int, Field(ge=0, le=10_000, description="basis points: 0..10000")]
Sha256Hex = Annotated[str, StringConstraints(pattern=HASH_PATTERN)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
Category = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class MoneyIn(BaseModel):
    """An amount of money in a command: positive integer minor units and a currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: PositiveMinorUnits
    currency: Currency


class EventSchema(BaseModel):
    """A published domain event: envelope fields plus the event's own fields (same names as the domain)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    event_type: ClassVar[str]
    """The domain event's type name (class qualname), e.g. "Listing.Drafted"; hashed with the event."""
    aggregate: ClassVar[str]
    """The aggregate kind; events are published to topic `bazaar.<aggregate>`."""
    redacted_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields the relay publishes as null (secrets); such events are verified from the store only."""

    aggregate_id: UUID = Field(description="the aggregate's id (originator_id in the event store)")
    version: int = Field(ge=1, description="the aggregate's version after this event")
    timestamp: AwareDatetime
    prev_hash: Sha256Hex = Field(description="sha256 of the aggregate's previous event (64 zeros first)")


class CreatedEventSchema(EventSchema):
    """A first event of an aggregate: also carries the (hashed) topic of the aggregate class."""

    originator_topic: str = Field(description="module:qualname of the aggregate class")


class CommandSchema(BaseModel):
    """A command accepted by the command API; the acting user comes from authentication."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    schema_name: ClassVar[str]
    schema_version: ClassVar[int] = 1
