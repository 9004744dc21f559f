"""Nothing more happens to a forgotten user's wallets, listings and licences (`user.forgotten`)."""

from __future__ import annotations

from commands.auth import Principal
from commands.handlers import licences, orders, users, wallets
from domain.user import UserForgottenError
from schemas.licence import IssueLicence
from schemas.order import PlaceOrder
from schemas.user import ForgetUser
from schemas.wallet import Deposit, WithdrawFunds
from tests.unit.commands.support import World, eur


def forget(world: World, user: Principal) -> None:
    world.run(lambda: users.forget_user(world.app, world.admin, ForgetUser(user_id=user.user_id)))


def test_no_deposit_into_a_forgotten_users_wallet(world: World) -> None:
    gone = world.forgotten(role="buyer")
    cmd = Deposit(amount=eur(100), reference="psp-1")
    error = world.refuses(UserForgottenError, lambda: wallets.deposit(world.app, world.admin, gone.user_id, cmd))
    assert error.code == "user.forgotten"


def test_no_withdrawal_from_a_forgotten_users_wallet(world: World) -> None:
    buyer = Principal(world.register("bob@example.org", role="buyer"), "buyer")
    world.fund(buyer, 100)
    forget(world, buyer)
    cmd = WithdrawFunds(amount=eur(100), reference="bank-1")
    world.refuses(UserForgottenError, lambda: wallets.withdraw_funds(world.app, world.admin, buyer.user_id, cmd))


def test_a_forgotten_sellers_listing_sells_no_more(world: World) -> None:
    seller = Principal(world.register("sam@example.org", role="seller"), "seller")
    listing_id = world.listing(seller=seller)
    forget(world, seller)
    world.fund(world.buyer)
    world.refuses(UserForgottenError,
                  lambda: orders.place_order(world.app, world.buyer, PlaceOrder(listing_id=listing_id)))


def test_no_licence_for_a_forgotten_licensee(world: World) -> None:
    gone = world.forgotten(role="buyer")
    listing_id = world.listing(kind="ai_model")
    cmd = IssueLicence(listing_id=listing_id, licensee_id=gone.user_id, kind="perpetual")
    world.refuses(UserForgottenError, lambda: licences.issue_licence(world.app, world.seller, cmd))
