"""`rm_licences`: what a licence check needs (status, expiry, quota and use)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import ClassVar

from projections.core import Handlers, Projection, Tables
from projections.read_models._sql import Cursor, params, setter
from schemas.licence import LicenceExpired, LicenceIssued, LicenceRenewed, LicenceRevoked, LicenceUsageRecorded

TABLE = "rm_licences"
LICENCES_DDL = """
CREATE TABLE {t} (
    licence_id uuid PRIMARY KEY, listing_id uuid NOT NULL, licensee_id uuid NOT NULL, kind text NOT NULL,
    status text NOT NULL, expires_at timestamptz, quota bigint, used bigint NOT NULL DEFAULT 0,
    issued_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
CREATE INDEX ON {t} (licensee_id, listing_id);
"""


# A handler setting columns of this table's row (assignments, then param -> event attribute).
_set = partial(setter, TABLE, "licence_id")


def apply_licence_issued(cur: Cursor, t: Tables, e: LicenceIssued, pos: int) -> None:
    cur.execute(
        f"INSERT INTO {t[TABLE]} (licence_id, listing_id, licensee_id, kind, status, expires_at, quota,"
        " issued_at, updated_at, version, position) VALUES (%(id)s, %(listing)s, %(licensee)s, %(kind)s,"
        " 'active', %(exp)s, %(quota)s, %(ts)s, %(ts)s, %(v)s, %(pos)s) ON CONFLICT DO NOTHING",
        params(e, pos, listing=e.listing_id, licensee=e.licensee_id, kind=e.kind, exp=e.expires_at,
               quota=e.quota),
    )


class LicencesProjection(Projection):
    """`rm_licences`: what a licence check needs."""

    name: ClassVar[str] = "licences"
    tables: ClassVar[Mapping[str, str]] = {TABLE: LICENCES_DDL}
    handlers: ClassVar[Handlers] = {
        LicenceIssued: apply_licence_issued,
        LicenceUsageRecorded: _set("used = used + %(units)s", units="units"),
        LicenceRenewed: _set(
            "expires_at = COALESCE(%(exp)s, expires_at),"
            " quota = CASE WHEN quota IS NULL THEN NULL ELSE quota + COALESCE(%(added)s, 0) END,"
            " status = 'active'", exp="expires_at", added="added_quota",
        ),
        LicenceRevoked: _set("status = 'revoked'"),
        LicenceExpired: _set("status = 'expired'"),
    }
