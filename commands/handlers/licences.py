"""Licences for AI products: issued by the listing's seller, used by the licensee, revoked by either side's admin."""

from __future__ import annotations

from uuid import uuid4

from commands.application import Change, Marketplace
from commands.auth import Principal
from commands.handlers import require_not_forgotten, require_role
from domain.errors import NotPartyError
from domain.licence import Licence
from domain.listing import Listing
from schemas.licence import IssueLicence, RecordUsage, RenewLicence, RevokeLicence


def _seller_or_admin(app: Marketplace, actor: Principal, listing: Listing) -> None:
    if not actor.is_admin:
        listing.check_owner(actor.user_id)


def _body(licence: Licence) -> dict[str, object]:
    return {"licence_id": str(licence.id), "status": licence.status.value, "remaining": licence.remaining}


def issue_licence(app: Marketplace, actor: Principal, cmd: IssueLicence) -> Change:
    require_role(actor, "seller")
    listing = app.load(Listing, cmd.listing_id)
    _seller_or_admin(app, actor, listing)
    require_not_forgotten(app, cmd.licensee_id)
    licence = Licence.issue(licence_id=uuid4(), listing_id=listing.id, licensee_id=cmd.licensee_id, kind=cmd.kind,
                            expires_at=cmd.expires_at, quota=cmd.quota, order_id=cmd.order_id, now=app.now())
    return Change(licence, body=_body(licence))


def record_usage(app: Marketplace, actor: Principal, cmd: RecordUsage, if_match: int | None = None) -> Change:
    licence = app.load(Licence, cmd.licence_id, if_match=if_match)
    if licence.licensee_id != actor.user_id and not actor.is_admin:
        raise NotPartyError("only the licensee records usage", licence_id=licence.id)
    now = app.now()
    licence.record_usage(units=cmd.units, at=cmd.at or now, now=now)
    return Change(licence, body=_body(licence))


def renew_licence(app: Marketplace, actor: Principal, cmd: RenewLicence, if_match: int | None = None) -> Change:
    licence = app.load(Licence, cmd.licence_id, if_match=if_match)
    _seller_or_admin(app, actor, app.load(Listing, licence.listing_id))
    licence.renew(expires_at=cmd.expires_at, added_quota=cmd.added_quota, now=app.now())
    return Change(licence, body=_body(licence))


def revoke_licence(app: Marketplace, actor: Principal, cmd: RevokeLicence, if_match: int | None = None) -> Change:
    licence = app.load(Licence, cmd.licence_id, if_match=if_match)
    _seller_or_admin(app, actor, app.load(Listing, licence.listing_id))
    licence.revoke(reason=cmd.reason, now=app.now())
    return Change(licence, body=_body(licence))
