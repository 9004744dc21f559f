"""Domain exceptions: every rule broken in `domain/` raises a `DomainError` with a machine-readable code.

Codes are `<aggregate>.<reason>` (e.g. "listing.not_published"); the command API maps them to 4xx
responses without parsing messages. Each aggregate module declares its own subclasses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar


class DomainError(Exception):
    """A business rule refused a command; `code` is stable and machine-readable."""

    code: ClassVar[str] = "domain.error"

    def __init__(self, message: str = "", **details: Any) -> None:
        self.message = message or (type(self).__doc__ or self.code)
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready body: code, message and details (values as strings)."""
        return {
            "code": self.code,
            "message": self.message,
            "details": {k: str(v) for k, v in self.details.items()},
        }


class NotFoundError(DomainError):
    """The aggregate a command refers to does not exist."""

    code = "domain.not_found"


class InvalidTimestampError(DomainError):
    """A timestamp passed into the domain is not timezone-aware."""

    code = "domain.naive_timestamp"


class NotPartyError(DomainError):
    """The actor is not allowed to act on this aggregate."""

    code = "domain.not_party"


def check_aware(now: datetime) -> None:
    """Refuse naive datetimes: event timestamps must hash and compare the same everywhere."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidTimestampError("timestamps must be timezone-aware", value=now.isoformat())
