"""Licence terms, usage, renewal, revocation and checks."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from domain.licence import (
    InvalidLicenceTermsError,
    Licence,
    LicenceDecision,
    LicenceExpiredError,
    LicenceRevokedError,
    LicenceStatus,
    NotExpiredError,
    NotRenewableError,
    QuotaExceededError,
)
from tests.unit.domain.support import BUYER, T0, at

DAY = timedelta(days=1)


def _issue(kind: str, **terms: object) -> Licence:
    return Licence.issue(licence_id=UUID(int=300), listing_id=UUID(int=100), licensee_id=BUYER, kind=kind,
                         now=T0, **terms)  # type: ignore[arg-type]


def test_perpetual_is_always_ok_until_revoked() -> None:
    licence = _issue("perpetual")
    assert licence.check(T0 + 1000 * DAY) == LicenceDecision(True, "ok")
    licence.revoke(reason="chargeback", now=at(1))
    assert licence.check(at(2)) == LicenceDecision(False, "revoked")
    with pytest.raises(LicenceRevokedError):
        licence.revoke(reason="again", now=at(3))
    with pytest.raises(LicenceRevokedError) as info:
        licence.record_usage(units=1, at=at(3), now=at(3))
    assert info.value.code == "licence.revoked"


def test_time_limited_expires_at_its_time() -> None:
    licence = _issue("time_limited", expires_at=T0 + DAY)
    assert licence.check(T0 + DAY - timedelta(seconds=1)).allowed
    assert licence.check(T0 + DAY) == LicenceDecision(False, "expired")
    with pytest.raises(NotExpiredError):
        licence.expire(now=at(1))
    with pytest.raises(LicenceExpiredError):
        licence.record_usage(units=1, at=T0 + 2 * DAY, now=T0 + 2 * DAY)
    licence.expire(now=T0 + DAY)
    assert licence.status == LicenceStatus.EXPIRED
    licence.renew(expires_at=T0 + 30 * DAY, now=T0 + 2 * DAY)
    assert licence.status == LicenceStatus.ACTIVE and licence.check(T0 + 3 * DAY).allowed


def test_renewal_must_extend() -> None:
    licence = _issue("time_limited", expires_at=T0 + 10 * DAY)
    with pytest.raises(InvalidLicenceTermsError):
        licence.renew(expires_at=T0 + 5 * DAY, now=at(1))
    with pytest.raises(InvalidLicenceTermsError):
        licence.renew(added_quota=5, now=at(1))


def test_usage_metered_quota() -> None:
    licence = _issue("usage_metered", quota=10)
    licence.record_usage(units=7, at=at(1), now=at(1))
    assert licence.remaining == 3 and licence.check(at(2)).allowed
    with pytest.raises(QuotaExceededError) as info:
        licence.record_usage(units=4, at=at(2), now=at(2))
    assert info.value.code == "licence.quota_exceeded"
    licence.record_usage(units=3, at=at(2), now=at(2))
    assert licence.check(at(3)) == LicenceDecision(False, "quota_exhausted")
    licence.renew(added_quota=5, now=at(4))
    assert licence.remaining == 5 and licence.check(at(5)).allowed


def test_perpetual_not_renewable() -> None:
    with pytest.raises(NotRenewableError):
        _issue("perpetual").renew(expires_at=T0 + DAY, now=at(1))


@pytest.mark.parametrize(("kind", "terms"), [
    ("perpetual", {"quota": 5}),
    ("time_limited", {}),
    ("time_limited", {"expires_at": T0 - DAY}),
    ("usage_metered", {"quota": 0}),
    ("usage_metered", {"quota": 5, "expires_at": T0 + DAY}),
    ("forever", {}),
])
def test_invalid_terms(kind: str, terms: dict[str, object]) -> None:
    with pytest.raises(InvalidLicenceTermsError):
        _issue(kind, **terms)


def test_usage_units_positive() -> None:
    with pytest.raises(InvalidLicenceTermsError):
        _issue("perpetual").record_usage(units=0, at=at(1), now=at(1))
