"""A licence check from rm_licences, by the same rules as domain/licence.py's `Licence.check`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from read_api.models import LicenceCheckPublic
from read_api.queries.rows import Conn, fetch_one

SQL = """
SELECT lc.licence_id, lc.listing_id, lc.licensee_id, lc.kind, lc.status, lc.expires_at, lc.quota, lc.used,
       l.seller_id
FROM rm_licences lc LEFT JOIN rm_listings l ON l.listing_id = lc.listing_id
WHERE lc.licence_id = %s
"""


@dataclass(frozen=True)
class LicenceRow:
    """The rm_licences columns a check needs, with the listing's seller (who may also check)."""

    licence_id: UUID
    listing_id: UUID
    licensee_id: UUID
    kind: str
    status: str
    expires_at: datetime | None
    quota: int | None
    used: int
    seller_id: UUID | None


def remaining(quota: int | None, used: int) -> int | None:
    """Units left on a metered licence (None when not metered)."""
    return None if quota is None else max(quota - used, 0)


def decide(status: str, expires_at: datetime | None, quota: int | None, used: int, now: datetime) -> str:
    """"ok", "revoked", "expired" or "quota_exhausted": expiry counts from expires_at on, event or not."""
    if status == "revoked":
        return "revoked"
    if status == "expired" or (expires_at is not None and now >= expires_at):
        return "expired"
    if remaining(quota, used) == 0:
        return "quota_exhausted"
    return "ok"


def find_licence(conn: Conn, licence_id: UUID) -> LicenceRow | None:
    """The licence row, or None when no such licence is projected."""
    row: dict[str, Any] | None = fetch_one(conn, SQL, (licence_id,))
    return None if row is None else LicenceRow(**row)


def check_licence(licence: LicenceRow, now: datetime) -> LicenceCheckPublic:
    """The answer at `now`."""
    reason = decide(licence.status, licence.expires_at, licence.quota, licence.used, now)
    return LicenceCheckPublic(
        licence_id=licence.licence_id,
        listing_id=licence.listing_id,
        licensee_id=licence.licensee_id,
        kind=licence.kind,
        status=licence.status,
        allowed=reason == "ok",
        reason=reason,  # type: ignore[arg-type]
        remaining=remaining(licence.quota, licence.used),
        expires_at=licence.expires_at,
        checked_at=now,
    )


def may_check(licence: LicenceRow, user_id: UUID, is_admin: bool) -> bool:
    """The licensee, the seller of the licensed listing, and admins."""
    return is_admin or user_id in (licence.licensee_id, licence.seller_id)
