"""Licence handlers on the in-memory store: issue, meter, renew and revoke, with every refusal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from commands.application import Change
from commands.auth import Principal
from commands.handlers import licences
from domain.errors import NotFoundError, NotPartyError
from domain.licence import (
    InvalidLicenceTermsError,
    Licence,
    LicenceExpiredError,
    LicenceRevokedError,
    LicenceStatus,
    NotRenewableError,
    QuotaExceededError,
)
from domain.listing import NotListingOwnerError
from schemas.licence import IssueLicence, RecordUsage, RenewLicence, RevokeLicence
from tests.unit.commands.support import T0, World

Act = Callable[[World, Principal, UUID], Change]
ACTS: dict[str, Act] = {
    "usage": lambda w, who, lid: licences.record_usage(w.app, who, RecordUsage(licence_id=lid, units=3)),
    "renew": lambda w, who, lid: licences.renew_licence(w.app, who, RenewLicence(licence_id=lid, added_quota=5)),
    "revoke": lambda w, who, lid: licences.revoke_licence(w.app, who, RevokeLicence(licence_id=lid, reason="abuse")),
}


def issue(world: World, actor: Principal, listing_id: UUID, **terms: object) -> Change:
    cmd = IssueLicence.model_validate({"listing_id": listing_id, "licensee_id": world.buyer.user_id, **terms})
    return licences.issue_licence(world.app, actor, cmd)


def test_issue_licence_saves_an_active_metered_licence(world: World) -> None:
    listing_id = world.listing(kind="ai_model")
    result = world.run(lambda: issue(world, world.seller, listing_id, kind="usage_metered", quota=10))
    licence = world.get(Licence, result.aggregate_id)
    assert result.body == {"licence_id": str(licence.id), "status": "active", "remaining": 10}
    assert (licence.listing_id, licence.licensee_id) == (listing_id, world.buyer.user_id)


def test_issue_licence_refuses_an_expiry_in_the_past(world: World) -> None:
    listing_id = world.listing(kind="ai_model")
    error = world.refuses(InvalidLicenceTermsError, lambda: issue(
        world, world.seller, listing_id, kind="time_limited", expires_at=T0 - timedelta(days=1)))
    assert error.code == "licence.invalid_terms"


def test_issue_licence_is_refused_to_buyers(world: World) -> None:
    listing_id = world.listing(kind="ai_model")
    world.forbidden(lambda: issue(world, world.buyer, listing_id, kind="perpetual"))


def test_issue_licence_is_refused_to_another_seller(world: World) -> None:
    listing_id = world.listing(kind="ai_model")
    world.refuses(NotListingOwnerError, lambda: issue(world, world.stranger, listing_id, kind="perpetual"))


def test_issue_licence_for_an_unknown_listing_is_not_found(world: World) -> None:
    world.refuses(NotFoundError, lambda: issue(world, world.seller, uuid4(), kind="perpetual"))


def test_record_usage_counts_down_the_quota(world: World) -> None:
    licence_id = world.licence(quota=10)
    result = world.run(lambda: ACTS["usage"](world, world.buyer, licence_id))
    assert result.body["remaining"] == 7 and world.get(Licence, licence_id).used == 3


def test_record_usage_beyond_the_quota_is_refused(world: World) -> None:
    licence_id = world.licence(quota=2)
    error = world.refuses(QuotaExceededError, lambda: ACTS["usage"](world, world.buyer, licence_id))
    assert error.code == "licence.quota_exceeded"


def test_record_usage_after_the_expiry_is_refused(world: World) -> None:
    licence_id = world.licence(kind="time_limited", quota=None, expires_at=T0 + timedelta(days=30))
    world.run(lambda: ACTS["usage"](world, world.buyer, licence_id))
    world.clock.advance(days=31)
    error = world.refuses(LicenceExpiredError, lambda: ACTS["usage"](world, world.buyer, licence_id))
    assert error.code == "licence.expired"


def test_record_usage_is_refused_to_anyone_but_the_licensee(world: World) -> None:
    licence_id = world.licence()
    error = world.refuses(NotPartyError, lambda: ACTS["usage"](world, world.seller, licence_id))
    assert error.code == "domain.not_party"


def test_renew_licence_adds_quota(world: World) -> None:
    licence_id = world.licence(quota=10)
    result = world.run(lambda: ACTS["renew"](world, world.seller, licence_id))
    assert result.body["remaining"] == 15


def test_renew_licence_extends_a_time_limited_licence(world: World) -> None:
    licence_id = world.licence(kind="time_limited", quota=None, expires_at=T0 + timedelta(days=30))
    later = T0 + timedelta(days=60)
    world.run(lambda: licences.renew_licence(world.app, world.seller, RenewLicence(licence_id=licence_id,
                                                                                  expires_at=later)))
    assert world.get(Licence, licence_id).expires_at == later


def test_renew_licence_refuses_an_earlier_expiry(world: World) -> None:
    licence_id = world.licence(kind="time_limited", quota=None, expires_at=T0 + timedelta(days=30))
    cmd = RenewLicence(licence_id=licence_id, expires_at=T0 + timedelta(days=10))
    world.refuses(InvalidLicenceTermsError, lambda: licences.renew_licence(world.app, world.seller, cmd))


def test_a_perpetual_licence_is_not_renewable(world: World) -> None:
    licence_id = world.licence(kind="perpetual", quota=None)
    error = world.refuses(NotRenewableError, lambda: ACTS["renew"](world, world.seller, licence_id))
    assert error.code == "licence.not_renewable"


def test_revoke_licence_denies_it_for_good(world: World) -> None:
    licence_id = world.licence()
    result = world.run(lambda: ACTS["revoke"](world, world.seller, licence_id))
    licence = world.get(Licence, licence_id)
    assert result.body["status"] == "revoked"
    assert (licence.status, licence.revocation_reason) == (LicenceStatus.REVOKED, "abuse")
    assert not licence.check(world.clock()).allowed


def test_an_admin_may_revoke_any_licence(world: World) -> None:
    licence_id = world.licence()
    world.run(lambda: ACTS["revoke"](world, world.admin, licence_id))
    assert world.get(Licence, licence_id).status == LicenceStatus.REVOKED


@pytest.mark.parametrize("name", sorted(ACTS))
def test_nothing_happens_to_a_revoked_licence(world: World, name: str) -> None:
    licence_id = world.licence()
    world.run(lambda: ACTS["revoke"](world, world.seller, licence_id))
    actor = world.buyer if name == "usage" else world.seller
    error = world.refuses(LicenceRevokedError, lambda: ACTS[name](world, actor, licence_id))
    assert error.code == "licence.revoked"


@pytest.mark.parametrize("who", ["buyer", "stranger"])
@pytest.mark.parametrize("name", ["renew", "revoke"])
def test_licensor_commands_are_refused_to_the_licensee_and_other_sellers(world: World, name: str, who: str) -> None:
    licence_id = world.licence()
    actor: Principal = getattr(world, who)
    error = world.refuses(NotListingOwnerError, lambda: ACTS[name](world, actor, licence_id))
    assert error.code == "listing.not_owner"


@pytest.mark.parametrize("name", sorted(ACTS))
def test_unknown_licence_is_not_found(world: World, name: str) -> None:
    world.refuses(NotFoundError, lambda: ACTS[name](world, world.admin, uuid4()))
