"""Listing handlers on the in-memory store: the legal path and every refusal, asserted by domain error class."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

import pytest

from commands.application import Change
from commands.auth import Principal
from commands.handlers import listings
from domain.errors import NotFoundError, NotPartyError
from domain.listing import (
    Listing,
    ListingClosedError,
    ListingCurrencyChangeError,
    ListingNotDraftError,
    ListingNotEditableError,
    ListingStatus,
    NotListingOwnerError,
)
from domain.money import Money
from schemas.listing import (
    ChangeListingPrice,
    DraftListing,
    EnrichListing,
    PublishListing,
    ReviseListing,
    SuspendListing,
    WithdrawListing,
)
from tests.unit.commands.support import World, eur

# A seller's command on a listing, built for (world, actor, listing id).
Act = Callable[[World, Principal, UUID], Change]

SELLER_ACTS: dict[str, Act] = {
    "revise": lambda w, who, lid: listings.revise_listing(
        w.app, who, ReviseListing(listing_id=lid, title="Brass lamp II")),
    "publish": lambda w, who, lid: listings.publish_listing(w.app, who, PublishListing(listing_id=lid)),
    "price": lambda w, who, lid: listings.change_listing_price(
        w.app, who, ChangeListingPrice(listing_id=lid, price=eur(12_000))),
    "withdraw": lambda w, who, lid: listings.withdraw_listing(w.app, who, WithdrawListing(listing_id=lid)),
}
ADMIN_ACTS: dict[str, Act] = {
    "enrich": lambda w, who, lid: listings.enrich_listing(
        w.app, who, EnrichListing(listing_id=lid, model_id="clip", model_version="1", condition_score=0.8)),
    "suspend": lambda w, who, lid: listings.suspend_listing(w.app, who, SuspendListing(listing_id=lid, reason="fraud")),
}


def test_draft_listing_saves_a_draft_owned_by_the_seller(world: World) -> None:
    cmd = DraftListing(kind="goods", title="Brass lamp", category="home", price=eur(10_000))
    result = world.run(lambda: listings.draft_listing(world.app, world.seller, cmd))
    listing = world.get(Listing, result.aggregate_id)
    assert (result.version, result.positions, result.body["status"]) == (1, [1], "draft")
    assert (listing.seller_id, listing.price, listing.status) == (world.seller.user_id, Money(10_000, "EUR"),
                                                                   ListingStatus.DRAFT)


def test_draft_listing_is_refused_to_buyers(world: World) -> None:
    cmd = DraftListing(kind="goods", title="Brass lamp", category="home", price=eur(10_000))
    world.forbidden(lambda: listings.draft_listing(world.app, world.buyer, cmd))


def test_revise_listing_changes_texts_and_keeps_the_rest(world: World) -> None:
    listing_id = world.listing()
    cmd = ReviseListing(listing_id=listing_id, title="Brass lamp II", attributes={"colour": "gold"})
    result = world.run(lambda: listings.revise_listing(world.app, world.seller, cmd))
    listing = world.get(Listing, listing_id)
    assert (listing.title, listing.attributes, listing.category) == ("Brass lamp II", {"colour": "gold"}, "home")
    assert result.version == 3 and result.body == {"status": "published"}


def test_publish_listing_puts_a_draft_on_sale(world: World) -> None:
    listing_id = world.listing(publish=False)
    result = world.run(lambda: listings.publish_listing(world.app, world.seller, PublishListing(listing_id=listing_id)))
    assert result.body == {"status": "published"}
    assert world.get(Listing, listing_id).status == ListingStatus.PUBLISHED


def test_change_listing_price_sets_the_new_price(world: World) -> None:
    listing_id = world.listing()
    world.run(lambda: SELLER_ACTS["price"](world, world.seller, listing_id))
    assert world.get(Listing, listing_id).price == Money(12_000, "EUR")


def test_change_listing_price_refuses_another_currency(world: World) -> None:
    listing_id = world.listing()
    cmd = ChangeListingPrice(listing_id=listing_id, price=eur(12_000, "USD"))
    error = world.refuses(ListingCurrencyChangeError,
                          lambda: listings.change_listing_price(world.app, world.seller, cmd))
    assert error.code == "listing.currency_change"


def test_withdraw_listing_closes_it_for_good(world: World) -> None:
    listing_id = world.listing()
    world.run(lambda: SELLER_ACTS["withdraw"](world, world.seller, listing_id))
    assert world.get(Listing, listing_id).status == ListingStatus.WITHDRAWN
    error = world.refuses(ListingClosedError, lambda: SELLER_ACTS["withdraw"](world, world.seller, listing_id))
    assert error.code == "listing.closed"


def test_enrich_listing_records_the_worker_output(world: World) -> None:
    listing_id = world.listing()
    world.run(lambda: ADMIN_ACTS["enrich"](world, world.admin, listing_id))
    enrichment = world.get(Listing, listing_id).enrichment
    assert enrichment is not None and enrichment["condition_score"] == 0.8 and enrichment["model_id"] == "clip"


def test_suspend_listing_takes_it_off_sale(world: World) -> None:
    listing_id = world.listing()
    result = world.run(lambda: ADMIN_ACTS["suspend"](world, world.admin, listing_id))
    listing = world.get(Listing, listing_id)
    assert result.body == {"status": "suspended"}
    assert (listing.status, listing.suspension_reason) == (ListingStatus.SUSPENDED, "fraud")


@pytest.mark.parametrize("name", sorted(SELLER_ACTS))
def test_seller_commands_may_be_done_by_an_admin(world: World, name: str) -> None:
    listing_id = world.listing(publish=name != "publish")
    before = world.version(listing_id)
    assert world.run(lambda: SELLER_ACTS[name](world, world.admin, listing_id)).version == before + 1


@pytest.mark.parametrize("name", sorted(SELLER_ACTS | ADMIN_ACTS))
def test_unknown_listing_is_not_found(world: World, name: str) -> None:
    act = (SELLER_ACTS | ADMIN_ACTS)[name]
    missing = uuid4()
    error = world.refuses(NotFoundError, lambda: act(world, world.admin, missing))
    assert error.code == "domain.not_found" and error.details["id"] == missing


@pytest.mark.parametrize("name", sorted(SELLER_ACTS))
def test_seller_commands_are_refused_to_other_sellers(world: World, name: str) -> None:
    listing_id = world.listing(publish=name != "publish")
    error = world.refuses(NotListingOwnerError, lambda: SELLER_ACTS[name](world, world.stranger, listing_id))
    assert isinstance(error, NotPartyError) and error.code == "listing.not_owner"


@pytest.mark.parametrize("name", sorted(ADMIN_ACTS))
def test_admin_commands_are_refused_to_the_seller(world: World, name: str) -> None:
    listing_id = world.listing()
    world.forbidden(lambda: ADMIN_ACTS[name](world, world.seller, listing_id))


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("revise", ListingNotEditableError),
        ("publish", ListingNotDraftError),
        ("price", ListingNotEditableError),
        ("withdraw", ListingClosedError),
        ("enrich", ListingClosedError),
        ("suspend", ListingNotEditableError),
    ],
)
def test_commands_on_a_withdrawn_listing_are_invalid_transitions(
    world: World, name: str, error: type[Exception]
) -> None:
    listing_id = world.listing()
    world.run(lambda: SELLER_ACTS["withdraw"](world, world.seller, listing_id))
    act = (SELLER_ACTS | ADMIN_ACTS)[name]
    world.refuses(error, lambda: act(world, world.admin, listing_id))


def test_publishing_twice_is_an_invalid_transition(world: World) -> None:
    listing_id = world.listing()
    error = world.refuses(ListingNotDraftError, lambda: SELLER_ACTS["publish"](world, world.seller, listing_id))
    assert error.code == "listing.not_draft"
