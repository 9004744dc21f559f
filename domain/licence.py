"""Licence: a buyer's right to use an AI model or dataset: perpetual, time-limited or usage-metered.

`check(now)` answers whether use is allowed right now, with a reason code: "ok", "revoked", "expired"
or "quota_exhausted". A time-limited licence counts as expired from `expires_at` on, even before the
`expired` event is recorded (that event is bookkeeping for read models, appended by a sweeper).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.chain import ChainedAggregate
from domain.errors import DomainError, check_aware


class LicenceKind(StrEnum):
    """The terms a licence is issued under."""

    PERPETUAL = "perpetual"
    TIME_LIMITED = "time_limited"
    USAGE_METERED = "usage_metered"


class LicenceStatus(StrEnum):
    """Recorded state of a licence (see `check` for the answer at a given time)."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class LicenceError(DomainError):
    """A licence rule was broken."""

    code = "licence.error"


class InvalidLicenceTermsError(LicenceError):
    """The terms do not fit the licence kind."""

    code = "licence.invalid_terms"


class LicenceRevokedError(LicenceError):
    """The licence was revoked."""

    code = "licence.revoked"


class LicenceExpiredError(LicenceError):
    """The licence has expired."""

    code = "licence.expired"


class QuotaExceededError(LicenceError):
    """The usage would exceed the remaining quota."""

    code = "licence.quota_exceeded"


class NotRenewableError(LicenceError):
    """A perpetual licence cannot be renewed."""

    code = "licence.not_renewable"


class NotExpiredError(LicenceError):
    """The licence has not reached its expiry."""

    code = "licence.not_expired"


@dataclass(frozen=True)
class LicenceDecision:
    """Whether use is allowed, and why (reason code)."""

    allowed: bool
    reason: str


def check_terms(kind: LicenceKind, expires_at: datetime | None, quota: int | None, now: datetime) -> None:
    """Each kind takes exactly its own term: an expiry in the future, a positive quota, or neither."""
    if kind == LicenceKind.TIME_LIMITED:
        if expires_at is None or quota is not None:
            raise InvalidLicenceTermsError("a time-limited licence needs expires_at and no quota")
        check_aware(expires_at)
        if expires_at <= now:
            raise InvalidLicenceTermsError("expires_at must be in the future")
    elif kind == LicenceKind.USAGE_METERED:
        if quota is None or expires_at is not None or quota <= 0:
            raise InvalidLicenceTermsError("a usage-metered licence needs a positive quota and no expiry")
    elif expires_at is not None or quota is not None:
        raise InvalidLicenceTermsError("a perpetual licence takes no expiry and no quota")


class Licence(ChainedAggregate):
    """The right of a licensee to use a listing's AI model or dataset."""

    class Event(ChainedAggregate.Event):
        """Base class of licence events."""

    class Issued(Event, ChainedAggregate.Created):
        """A licence was issued (`order_id` links the purchase, if any)."""

        listing_id: UUID
        licensee_id: UUID
        kind: str
        expires_at: datetime | None
        quota: int | None
        order_id: UUID | None

    def __init__(self, listing_id: UUID, licensee_id: UUID, kind: str, expires_at: datetime | None,
                 quota: int | None, order_id: UUID | None) -> None:
        self.listing_id = listing_id
        self.licensee_id = licensee_id
        self.kind = LicenceKind(kind)
        self.expires_at = expires_at
        self.quota = quota
        self.order_id = order_id
        self.used = 0
        self.status = LicenceStatus.ACTIVE
        self.revocation_reason: str | None = None

    @classmethod
    def issue(cls, *, licence_id: UUID, listing_id: UUID, licensee_id: UUID, kind: LicenceKind | str,
              now: datetime, expires_at: datetime | None = None, quota: int | None = None,
              order_id: UUID | None = None) -> Licence:
        """Issue a licence under the given terms."""
        check_aware(now)
        try:
            kind = LicenceKind(kind)
        except ValueError as exc:
            raise InvalidLicenceTermsError(f"unknown licence kind {kind!r}") from exc
        check_terms(kind, expires_at, quota, now)
        return cls._create_chained(
            cls.Issued, licence_id, now, listing_id=listing_id, licensee_id=licensee_id, kind=kind.value,
            expires_at=expires_at, quota=quota, order_id=order_id,
        )

    @property
    def remaining(self) -> int | None:
        """Units left on a metered licence (None when not metered)."""
        return None if self.quota is None else max(self.quota - self.used, 0)

    def check(self, now: datetime) -> LicenceDecision:
        """May the licensee use the licence at `now`?"""
        if self.status == LicenceStatus.REVOKED:
            return LicenceDecision(False, "revoked")
        if self.status == LicenceStatus.EXPIRED or self._past_expiry(now):
            return LicenceDecision(False, "expired")
        if self.remaining == 0:
            return LicenceDecision(False, "quota_exhausted")
        return LicenceDecision(True, "ok")

    def _past_expiry(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    # Guards ------------------------------------------------------------------------------------------

    def check_not_revoked(self) -> None:
        """Nothing happens to a revoked licence."""
        if self.status == LicenceStatus.REVOKED:
            raise LicenceRevokedError(licence_id=self.id)

    def check_usable(self, units: int, now: datetime) -> None:
        """Usage needs a live licence with enough quota left."""
        self.check_not_revoked()
        if self.status == LicenceStatus.EXPIRED or self._past_expiry(now):
            raise LicenceExpiredError(licence_id=self.id)
        if units <= 0:
            raise InvalidLicenceTermsError("usage units must be positive")
        remaining = self.remaining
        if remaining is not None and units > remaining:
            raise QuotaExceededError(f"{units} units requested, {remaining} left", licence_id=self.id)

    # Commands ----------------------------------------------------------------------------------------

    class UsageRecorded(Event):
        """The licensee used `units` at time `at` (metering)."""

        units: int
        at: datetime

        def apply(self, aggregate: Licence) -> None:
            aggregate.used += self.units

    def record_usage(self, *, units: int, at: datetime, now: datetime) -> None:
        """Record usage (any kind may be metered for analytics; quotas bind metered licences)."""
        check_aware(now)
        check_aware(at)
        self.check_usable(units, at)
        self._trigger(self.UsageRecorded, now, units=units, at=at)

    class Renewed(Event):
        """A time-limited licence got a later expiry, or a metered one more quota."""

        expires_at: datetime | None
        added_quota: int | None

        def apply(self, aggregate: Licence) -> None:
            if self.expires_at is not None:
                aggregate.expires_at = self.expires_at
            if self.added_quota is not None and aggregate.quota is not None:
                aggregate.quota += self.added_quota
            aggregate.status = LicenceStatus.ACTIVE

    def renew(self, *, now: datetime, expires_at: datetime | None = None,
              added_quota: int | None = None) -> None:
        """Extend a licence (an expired one becomes active again)."""
        check_aware(now)
        self.check_not_revoked()
        if self.kind == LicenceKind.PERPETUAL:
            raise NotRenewableError(licence_id=self.id)
        if self.kind == LicenceKind.TIME_LIMITED:
            check_terms(self.kind, expires_at, added_quota, now)
            assert expires_at is not None and self.expires_at is not None
            if expires_at <= self.expires_at:
                raise InvalidLicenceTermsError("a renewal must extend the expiry")
        else:
            check_terms(self.kind, expires_at, added_quota, now)
        self._trigger(self.Renewed, now, expires_at=expires_at, added_quota=added_quota)

    class Revoked(Event):
        """The licensor or an admin revoked the licence."""

        reason: str

        def apply(self, aggregate: Licence) -> None:
            aggregate.status = LicenceStatus.REVOKED
            aggregate.revocation_reason = self.reason

    def revoke(self, *, reason: str, now: datetime) -> None:
        """Revoke the licence for good."""
        check_aware(now)
        self.check_not_revoked()
        self._trigger(self.Revoked, now, reason=reason)

    class Expired(Event):
        """A time-limited licence reached its expiry."""

        def apply(self, aggregate: Licence) -> None:
            aggregate.status = LicenceStatus.EXPIRED

    def expire(self, *, now: datetime) -> None:
        """Record the expiry of a time-limited licence whose time has come."""
        check_aware(now)
        self.check_not_revoked()
        if self.status == LicenceStatus.EXPIRED or not self._past_expiry(now):
            raise NotExpiredError(licence_id=self.id)
        self._trigger(self.Expired, now)
