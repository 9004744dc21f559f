"""Every handler through Marketplace.run: an Idempotency-Key retry replays, a stale If-Match is a 409.

Each case prepares a world and answers the legal call of one handler (taking the If-Match value) and the
aggregate a client would pin; the same checks then run for every handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import pytest

from commands.application import Change, Idempotency, IdempotencyKeyReused, VersionConflict
from commands.handlers import licences, listings, orders, trust, users, wallets
from schemas import licence as lic
from schemas import listing as lst
from schemas import order as odr
from schemas import trust as tru
from schemas import user as usr
from schemas import wallet as wal
from tests.unit.commands.support import PASSWORD, T0, World, eur

Act = Callable[[int | None], Change]


@dataclass(frozen=True)
class Prepared:
    """One handler's legal call, ready to run, and the aggregate an If-Match pins (None: not pinnable)."""

    act: Act
    pinned: UUID | None = None


def _register(w: World) -> Prepared:
    cmd = usr.RegisterUser(email="grace@example.org", password=PASSWORD, display_name="Grace")
    return Prepared(lambda m: users.register_user(w.app, cmd))


def _change_role(w: World) -> Prepared:
    cmd = usr.ChangeUserRole(user_id=w.register(), role="seller")
    return Prepared(lambda m: users.change_user_role(w.app, w.admin, cmd))


def _forget(w: World) -> Prepared:
    cmd = usr.ForgetUser(user_id=w.register())
    return Prepared(lambda m: users.forget_user(w.app, w.admin, cmd))


def _deposit(w: World) -> Prepared:
    cmd = wal.Deposit(amount=eur(700), reference="psp-7")
    return Prepared(lambda m: wallets.deposit(w.app, w.buyer, w.buyer.user_id, cmd))


def _withdraw(w: World) -> Prepared:
    w.fund(w.seller, 1_000)
    cmd = wal.WithdrawFunds(amount=eur(600), reference="bank-7")  # a second withdrawal would overdraw
    return Prepared(lambda m: wallets.withdraw_funds(w.app, w.seller, w.seller.user_id, cmd))


def _draft(w: World) -> Prepared:
    cmd = lst.DraftListing(kind="dataset", title="Bird songs", category="audio", price=eur(900))
    return Prepared(lambda m: listings.draft_listing(w.app, w.seller, cmd))


def _on_listing(handler: Callable[..., Change], make: Callable[[UUID], object], *, publish: bool = True,
                admin: bool = False, pinnable: bool = True) -> Callable[[World], Prepared]:
    def prepare(w: World) -> Prepared:
        listing_id = w.listing(publish=publish)
        cmd, actor = make(listing_id), w.admin if admin else w.seller
        if pinnable:
            return Prepared(lambda m: handler(w.app, actor, cmd, m), listing_id)
        return Prepared(lambda m: handler(w.app, actor, cmd))
    return prepare


def _place(w: World) -> Prepared:
    listing_id = w.listing()
    w.fund(w.buyer)
    return Prepared(lambda m: orders.place_order(w.app, w.buyer, odr.PlaceOrder(listing_id=listing_id)))


def _on_order(handler: Callable[..., Change], make: Callable[[UUID], object], status: str,
              who: str) -> Callable[[World], Prepared]:
    def prepare(w: World) -> Prepared:
        order_id = w.order(status=status)
        cmd = make(order_id)
        return Prepared(lambda m: handler(w.app, getattr(w, who), cmd, m), order_id)
    return prepare


def _issue(w: World) -> Prepared:
    listing_id = w.listing(kind="ai_model")
    cmd = lic.IssueLicence(listing_id=listing_id, licensee_id=w.buyer.user_id, kind="perpetual")
    return Prepared(lambda m: licences.issue_licence(w.app, w.seller, cmd))


def _on_licence(handler: Callable[..., Change], make: Callable[[UUID], object],
                who: str) -> Callable[[World], Prepared]:
    def prepare(w: World) -> Prepared:
        licence_id = w.licence(quota=5)
        cmd = make(licence_id)
        return Prepared(lambda m: handler(w.app, getattr(w, who), cmd, m), licence_id)
    return prepare


def _signal(w: World) -> Prepared:
    cmd = tru.RecordTrustSignal(user_id=w.register(), kind="kyc_verified", ref="kyc-1", at=T0)
    return Prepared(lambda m: trust.record_trust_signal(w.app, w.admin, cmd))


CASES: dict[str, Callable[[World], Prepared]] = {
    "register_user": _register,
    "change_user_role": _change_role,
    "forget_user": _forget,
    "deposit": _deposit,
    "withdraw_funds": _withdraw,
    "draft_listing": _draft,
    "revise_listing": _on_listing(listings.revise_listing,
                                  lambda lid: lst.ReviseListing(listing_id=lid, title="Bird songs II")),
    "publish_listing": _on_listing(listings.publish_listing, lambda lid: lst.PublishListing(listing_id=lid),
                                   publish=False),
    "change_listing_price": _on_listing(listings.change_listing_price,
                                        lambda lid: lst.ChangeListingPrice(listing_id=lid, price=eur(8_000))),
    "withdraw_listing": _on_listing(listings.withdraw_listing, lambda lid: lst.WithdrawListing(listing_id=lid)),
    "enrich_listing": _on_listing(listings.enrich_listing, lambda lid: lst.EnrichListing(
        listing_id=lid, model_id="clip", model_version="1"), admin=True, pinnable=False),
    "suspend_listing": _on_listing(listings.suspend_listing, lambda lid: lst.SuspendListing(
        listing_id=lid, reason="fraud"), admin=True, pinnable=False),
    "set_auto_boost": _on_listing(listings.set_auto_boost, lambda lid: lst.SetAutoBoost(
        listing_id=lid, enabled=True), pinnable=False),
    "boost_listing": _on_listing(listings.boost_listing, lambda lid: lst.BoostListing(
        listing_id=lid, until=T0 + timedelta(days=3650), source="paid"), admin=True, pinnable=False),
    "place_order": _place,
    "ship_order": _on_order(orders.ship_order, lambda oid: odr.ShipOrder(order_id=oid), "funds_held", "seller"),
    "confirm_delivery": _on_order(orders.confirm_delivery, lambda oid: odr.ConfirmDelivery(order_id=oid),
                                  "shipped", "buyer"),
    "cancel_order": _on_order(orders.cancel_order, lambda oid: odr.CancelOrder(order_id=oid, reason="no"),
                              "funds_held", "buyer"),
    "open_dispute": _on_order(orders.open_dispute, lambda oid: odr.OpenDispute(order_id=oid, reason="late"),
                              "shipped", "buyer"),
    "resolve_dispute": _on_order(orders.resolve_dispute, lambda oid: odr.ResolveDispute(
        order_id=oid, outcome="release", note="fine"), "disputed", "admin"),
    "issue_licence": _issue,
    "record_usage": _on_licence(licences.record_usage, lambda lid: lic.RecordUsage(licence_id=lid, units=3),
                                "buyer"),
    "renew_licence": _on_licence(licences.renew_licence, lambda lid: lic.RenewLicence(
        licence_id=lid, expires_at=None, added_quota=1), "seller"),
    "revoke_licence": _on_licence(licences.revoke_licence, lambda lid: lic.RevokeLicence(
        licence_id=lid, reason="abuse"), "seller"),
    "record_trust_signal": _signal,
}
PINNABLE = [
    "revise_listing", "publish_listing", "change_listing_price", "withdraw_listing", "ship_order",
    "confirm_delivery", "cancel_order", "open_dispute", "resolve_dispute", "record_usage", "renew_licence",
    "revoke_licence",
]


def key(fingerprint: str = "request-1") -> Idempotency:
    return Idempotency("client-1", "retry-key-1", fingerprint)


def test_every_handler_has_a_case() -> None:
    modules = (users, wallets, listings, orders, licences, trust)
    handlers = {name for module in modules for name, value in vars(module).items()
                if callable(value) and getattr(value, "__module__", None) == module.__name__
                and not name.startswith("_") and "Change" in str(getattr(value, "__annotations__", {}).get("return"))}
    assert handlers == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_retry_with_the_same_key_replays_the_first_response_and_appends_nothing(world: World, name: str) -> None:
    prepared = CASES[name](world)
    first = world.run(lambda: prepared.act(None), key=key())
    after_first = world.position()
    again = world.run(lambda: prepared.act(None), key=key())
    assert again.replayed and not first.replayed
    assert again.to_json() == first.to_json() and again.positions == first.positions
    assert world.position() == after_first


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_key_reused_for_another_request_is_refused(world: World, name: str) -> None:
    prepared = CASES[name](world)
    world.run(lambda: prepared.act(None), key=key())
    error = world.refuses(IdempotencyKeyReused, lambda: prepared.act(None), key=key("request-2"))
    assert error.code == "idempotency.key_reused"


@pytest.mark.parametrize("name", PINNABLE)
def test_a_stale_if_match_is_a_version_conflict_and_the_current_one_passes(world: World, name: str) -> None:
    prepared = CASES[name](world)
    assert prepared.pinned is not None
    current = world.version(prepared.pinned)
    conflict = world.refuses(VersionConflict, lambda: prepared.act(current - 1), if_match=current - 1)
    assert (conflict.aggregate_id, conflict.current_version) == (prepared.pinned, current)
    result = world.run(lambda: prepared.act(current), if_match=current)
    assert result.aggregate_id == prepared.pinned and result.version > current


def test_pinnable_cases_are_exactly_the_handlers_taking_if_match() -> None:
    assert {name for name, prepare in CASES.items() if "if_match" in _handler_params(name)} == set(PINNABLE)


def _handler_params(name: str) -> set[str]:
    for module in (users, wallets, listings, orders, licences, trust):
        if (handler := getattr(module, name, None)) is not None:
            return set(handler.__code__.co_varnames[: handler.__code__.co_argcount])
    raise AssertionError(name)


def test_an_unpinned_command_that_lost_a_race_is_run_again_on_fresh_state(world: World) -> None:
    world.fund(world.buyer, 1_000)
    calls: list[str] = []

    def deposit_racing_once() -> Change:
        change = wallets.deposit(world.app, world.buyer, world.buyer.user_id,
                                 wal.Deposit(amount=eur(100), reference=f"psp-{len(calls)}"))
        if not calls:  # another command commits to the same wallet between this load and the commit
            calls.append("raced")
            world.fund(world.buyer, 10)
        calls.append("ran")
        return change

    result = world.run(deposit_racing_once)
    assert calls == ["raced", "ran", "ran"] and result.body["available"] == 1_110


def test_a_pinned_command_that_lost_a_race_is_a_version_conflict(world: World) -> None:
    listing_id = world.listing()
    pinned = world.version(listing_id)

    def revise_racing() -> Change:
        change = listings.revise_listing(world.app, world.seller, lst.ReviseListing(listing_id=listing_id,
                                                                                   title="Mine"), pinned)
        # another command commits to the same listing between this load and the commit
        world.run(lambda: listings.change_listing_price(
            world.app, world.seller, lst.ChangeListingPrice(listing_id=listing_id, price=eur(5))))
        return change

    before = world.position()
    with pytest.raises(VersionConflict) as info:
        world.run(revise_racing, if_match=pinned)
    assert info.value.current_version == pinned + 1
    assert world.position() == before + 1  # the racing price change only
