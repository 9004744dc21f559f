"""Wallet handlers on the in-memory store: deposits open the wallet, withdrawals never overdraw it."""

from __future__ import annotations

from uuid import uuid4

from commands.auth import Principal
from commands.handlers import orders, wallets
from domain.wallet import InsufficientFundsError, Wallet, wallet_id_for
from schemas.order import PlaceOrder
from schemas.wallet import Deposit, WithdrawFunds
from tests.unit.commands.support import World, eur


def deposit(amount: int) -> Deposit:
    return Deposit(amount=eur(amount), reference="psp-1")


def withdrawal(amount: int) -> WithdrawFunds:
    return WithdrawFunds(amount=eur(amount), reference="bank-1")


def test_first_deposit_opens_the_wallet_in_the_same_append(world: World) -> None:
    user = world.buyer.user_id
    result = world.run(lambda: wallets.deposit(world.app, world.buyer, user, deposit(2_500)))
    assert result.aggregate_id == wallet_id_for(user, "EUR") and len(result.positions) == 2  # opened, deposited
    assert result.body == {"available": 2_500, "held": 0, "currency": "EUR"}
    world.run(lambda: wallets.deposit(world.app, world.buyer, user, deposit(500)))
    assert world.get(Wallet, result.aggregate_id).available.amount == 3_000


def test_an_admin_may_deposit_for_a_user(world: World) -> None:
    user = world.seller.user_id
    result = world.run(lambda: wallets.deposit(world.app, world.admin, user, deposit(100)))
    assert world.get(Wallet, result.aggregate_id).owner_id == user


def test_deposit_into_someone_elses_wallet_is_refused(world: World) -> None:
    world.forbidden(lambda: wallets.deposit(world.app, world.stranger, world.buyer.user_id, deposit(100)))


def test_deposit_is_refused_to_auditors(world: World) -> None:
    auditor = Principal(uuid4(), "auditor")
    world.forbidden(lambda: wallets.deposit(world.app, auditor, auditor.user_id, deposit(100)))


def test_withdraw_funds_pays_out_available_money(world: World) -> None:
    world.fund(world.seller, 5_000)
    result = world.run(lambda: wallets.withdraw_funds(world.app, world.seller, world.seller.user_id, withdrawal(1_500)))
    assert result.body["available"] == 3_500 and len(result.positions) == 1


def test_withdraw_funds_refuses_more_than_available(world: World) -> None:
    world.fund(world.seller, 5_000)
    error = world.refuses(InsufficientFundsError, lambda: wallets.withdraw_funds(
        world.app, world.seller, world.seller.user_id, withdrawal(5_001)))
    assert error.code == "wallet.insufficient_funds"


def test_money_held_in_escrow_cannot_be_withdrawn(world: World) -> None:
    listing_id = world.listing(price=10_000)
    world.fund(world.buyer, 10_000)
    world.run(lambda: orders.place_order(world.app, world.buyer, PlaceOrder(listing_id=listing_id)))
    world.refuses(InsufficientFundsError, lambda: wallets.withdraw_funds(
        world.app, world.buyer, world.buyer.user_id, withdrawal(1)))


def test_withdrawing_from_a_wallet_never_opened_is_insufficient_funds(world: World) -> None:
    user = world.buyer.user_id
    world.refuses(InsufficientFundsError, lambda: wallets.withdraw_funds(world.app, world.buyer, user, withdrawal(1)))
    assert not world.app.exists(wallet_id_for(user, "EUR"))


def test_withdrawing_from_someone_elses_wallet_is_refused(world: World) -> None:
    world.fund(world.buyer)
    world.forbidden(lambda: wallets.withdraw_funds(
        world.app, world.stranger, world.buyer.user_id, withdrawal(100)))
