"""Base models and shared field types for published events and accepted commands."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
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
def _whole_number(value: object) -> object:
    """An integer as JSON (and JSON Schema) means it: 12 and 12.0 are the same number; "12", 12.5 and true are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer (minor units), not a string or a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number of minor units")
        return int(value)
    return value


MAX_MINOR_UNITS = 10**15
"""The largest amount of money Bazaar handles, in minor units: any amount, balance or escrow stays within it,
so that sums over thousands of them still fit a 64-bit integer (PostgreSQL bigint) on the read side."""
MinorUnits = Annotated[
    int,
    Field(strict=True, ge=0, le=MAX_MINOR_UNITS, description="integer minor units (e.g. cents): a balance or a fee"),
    BeforeValidator(_whole_number),
]
PositiveMinorUnits = Annotated[
    int,
    Field(strict=True, ge=1, le=MAX_MINOR_UNITS, description="integer minor units (e.g. cents) of an amount moved"),
    BeforeValidator(_whole_number),
]
BasisPoints = Annotated[int, Field(ge=0, le=10_000, description="basis points: 0..10000")]
Sha256Hex = Annotated[str, StringConstraints(pattern=HASH_PATTERN)]
# Whitespace spelled out (what Python's str.strip removes, plus U+FEFF): "\s" means different sets in
# Python, in pydantic's Rust regex engine and in JSON Schema's ECMA-262 patterns.
SPACE_CLASS = r"\t\n\x0b\x0c\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_SPACES = "\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)


def trim_spaces(value: str) -> str:
    return value.strip(_SPACES)


def solid_pattern(min_length: int) -> str:
    """At least `min_length` characters besides surrounding whitespace (which `trim_spaces` then removes).

    JSON Schema has no "length after trimming", so that minimum is this pattern, checked here by the same pattern.
    """
    solid = f"[^{SPACE_CLASS}]"
    return solid if min_length == 1 else f"{solid}[\\s\\S]{{{min_length - 2},}}{solid}"


Trim = AfterValidator(trim_spaces)
Title = Annotated[str, StringConstraints(max_length=200, pattern=solid_pattern(3)), Trim]
Description = Annotated[str, StringConstraints(max_length=20_000)]
Category = Annotated[str, StringConstraints(max_length=100, pattern=solid_pattern(1)), Trim]
Reason = Annotated[str, StringConstraints(max_length=2_000, pattern=solid_pattern(1)), Trim]
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
