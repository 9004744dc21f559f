"""Listings: draft, revise, publish, reprice, withdraw (sellers); enrich, suspend (admins, workers)."""

from __future__ import annotations

from uuid import uuid4

from commands.application import Change, Marketplace
from commands.auth import Principal
from commands.handlers import require_role
from domain.listing import Listing
from domain.money import Money
from schemas.listing import (
    BoostListing,
    ChangeListingPrice,
    DraftListing,
    EnrichListing,
    PublishListing,
    ReviseListing,
    SetAutoBoost,
    SuspendListing,
    WithdrawListing,
)


def draft_listing(app: Marketplace, actor: Principal, cmd: DraftListing) -> Change:
    require_role(actor, "seller")
    listing = Listing.draft(
        listing_id=uuid4(), seller_id=actor.user_id, kind=cmd.kind, title=cmd.title,
        description=cmd.description, category=cmd.category, price=Money(cmd.price.amount, cmd.price.currency),
        attributes=dict(cmd.attributes), creator_id=cmd.creator_id, royalty_bps=cmd.royalty_bps, now=app.now(),
    )
    return Change(listing, body={"listing_id": str(listing.id), "status": listing.status.value})


def _owned(app: Marketplace, actor: Principal, listing_id: object, if_match: int | None) -> Listing:
    listing = app.load(Listing, listing_id, if_match=if_match)  # type: ignore[arg-type]
    if not actor.is_admin:
        listing.check_owner(actor.user_id)
    return listing


def revise_listing(app: Marketplace, actor: Principal, cmd: ReviseListing, if_match: int | None = None) -> Change:
    listing = _owned(app, actor, cmd.listing_id, if_match)
    listing.revise(title=cmd.title, description=cmd.description, category=cmd.category,
                   attributes=dict(cmd.attributes) if cmd.attributes is not None else None, now=app.now())
    return Change(listing, body={"status": listing.status.value})


def publish_listing(app: Marketplace, actor: Principal, cmd: PublishListing, if_match: int | None = None) -> Change:
    listing = _owned(app, actor, cmd.listing_id, if_match)
    listing.publish(now=app.now())
    return Change(listing, body={"status": listing.status.value})


def change_listing_price(
    app: Marketplace, actor: Principal, cmd: ChangeListingPrice, if_match: int | None = None
) -> Change:
    listing = _owned(app, actor, cmd.listing_id, if_match)
    listing.change_price(price=Money(cmd.price.amount, cmd.price.currency), now=app.now())
    return Change(listing, body={"status": listing.status.value})


def withdraw_listing(app: Marketplace, actor: Principal, cmd: WithdrawListing, if_match: int | None = None) -> Change:
    listing = _owned(app, actor, cmd.listing_id, if_match)
    listing.withdraw(now=app.now())
    return Change(listing, body={"status": listing.status.value})


def enrich_listing(app: Marketplace, actor: Principal, cmd: EnrichListing) -> Change:
    require_role(actor, "admin")
    listing = app.load(Listing, cmd.listing_id)
    listing.enrich(model_id=cmd.model_id, model_version=cmd.model_version, embedding_ref=cmd.embedding_ref,
                   condition_score=cmd.condition_score, image_hashes=list(cmd.image_hashes),
                   quality_score=cmd.quality_score, now=app.now())
    return Change(listing)


def suspend_listing(app: Marketplace, actor: Principal, cmd: SuspendListing) -> Change:
    require_role(actor, "admin")
    listing = app.load(Listing, cmd.listing_id)
    listing.suspend(reason=cmd.reason, now=app.now())
    return Change(listing, body={"status": listing.status.value})


def set_auto_boost(app: Marketplace, actor: Principal, cmd: SetAutoBoost) -> Change:
    listing = _owned(app, actor, cmd.listing_id, None)
    listing.set_auto_boost(enabled=cmd.enabled, now=app.now())
    return Change(listing, body={"auto_boost": listing.auto_boost})


def boost_listing(app: Marketplace, actor: Principal, cmd: BoostListing) -> Change:
    require_role(actor, "admin")  # the auto-boost agent's service token, or trust and safety
    listing = app.load(Listing, cmd.listing_id)
    if cmd.source == "auto":
        listing.check_auto_boost_enabled()
    listing.boost(until=cmd.until, source=cmd.source, now=app.now())
    return Change(listing, body={"boosted_until": cmd.until.isoformat()})
