"""Wallet: balances, holds, insufficient funds."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.money import InvalidMoneyError, Money
from domain.wallet import (
    PLATFORM_OWNER_ID,
    HoldExistsError,
    HoldNotFoundError,
    InsufficientFundsError,
    InvalidCreditSourceError,
    InvalidWalletAmountError,
    Wallet,
    WalletCurrencyMismatchError,
    wallet_id_for,
)
from tests.unit.domain.support import BUYER, T0, at

ORDER = UUID(int=50)


def _wallet(amount: int = 1_000) -> Wallet:
    wallet = Wallet.open(owner_id=BUYER, currency="EUR", now=T0)
    if amount:
        wallet.deposit(amount=Money(amount, "EUR"), reference="psp", now=at(1))
    return wallet


def test_id_is_derived_from_owner_and_currency() -> None:
    wallet = _wallet(0)
    assert wallet.id == wallet_id_for(BUYER, "EUR") != wallet_id_for(BUYER, "USD")
    assert wallet_id_for(PLATFORM_OWNER_ID, "EUR") == Wallet.open(owner_id=PLATFORM_OWNER_ID, currency="EUR",
                                                                  now=T0).id


def test_open_refuses_bad_currency() -> None:
    with pytest.raises(InvalidMoneyError):
        Wallet.open(owner_id=BUYER, currency="euro", now=T0)


def test_deposit_hold_release_credit_withdraw() -> None:
    wallet = _wallet()
    wallet.hold(order_id=ORDER, amount=Money(300, "EUR"), now=at(2))
    assert (wallet.available, wallet.held) == (Money(700, "EUR"), Money(300, "EUR"))
    assert wallet.release_hold(order_id=ORDER, now=at(3)) == Money(300, "EUR")
    assert wallet.held == Money(0, "EUR") and wallet.total == Money(700, "EUR")
    wallet.credit(amount=Money(300, "EUR"), source="refund", order_id=ORDER, now=at(4))
    wallet.withdraw(amount=Money(1_000, "EUR"), reference="payout", now=at(5))
    assert wallet.total == Money(0, "EUR") and wallet.version == 6


def test_insufficient_funds() -> None:
    wallet = _wallet(100)
    with pytest.raises(InsufficientFundsError) as info:
        wallet.hold(order_id=ORDER, amount=Money(101, "EUR"), now=at(2))
    assert info.value.code == "wallet.insufficient_funds"
    with pytest.raises(InsufficientFundsError):
        wallet.withdraw(amount=Money(101, "EUR"), reference="p", now=at(2))
    assert wallet.available == Money(100, "EUR")


def test_held_money_cannot_be_withdrawn() -> None:
    wallet = _wallet(100)
    wallet.hold(order_id=ORDER, amount=Money(60, "EUR"), now=at(2))
    with pytest.raises(InsufficientFundsError):
        wallet.withdraw(amount=Money(50, "EUR"), reference="p", now=at(3))


def test_one_hold_per_order_and_release_needs_hold() -> None:
    wallet = _wallet()
    wallet.hold(order_id=ORDER, amount=Money(1, "EUR"), now=at(2))
    with pytest.raises(HoldExistsError):
        wallet.hold(order_id=ORDER, amount=Money(1, "EUR"), now=at(3))
    with pytest.raises(HoldNotFoundError):
        wallet.release_hold(order_id=UUID(int=51), now=at(3))


@pytest.mark.parametrize(("amount", "error"), [
    (Money(0, "EUR"), InvalidWalletAmountError),
    (Money(5, "USD"), WalletCurrencyMismatchError),
])
def test_amount_must_be_positive_and_in_currency(amount: Money, error: type[Exception]) -> None:
    wallet = _wallet()
    for action in (lambda: wallet.deposit(amount=amount, reference="r", now=at(2)),
                   lambda: wallet.credit(amount=amount, source="sale", order_id=ORDER, now=at(2)),
                   lambda: wallet.withdraw(amount=amount, reference="r", now=at(2))):
        with pytest.raises(error):
            action()


def test_unknown_credit_source_refused() -> None:
    with pytest.raises(InvalidCreditSourceError):
        _wallet().credit(amount=Money(1, "EUR"), source="gift", order_id=ORDER, now=at(2))
