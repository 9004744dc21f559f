"""Wallet: one per user per currency; money is either available or held for an order.

Conservation: deposits add money, withdrawals remove it, and a hold being released (paid out) leaves
this wallet only to be credited to another in the same atomic save (see `domain/escrow.py`). A refund is
the buyer's own hold released and credited back (`hold_released` then `credited` with source "refund").
The wallet id is derived from (owner, currency) with uuid5 (deterministic, not random), so the command
side finds a wallet without a lookup table. The platform's fee wallet belongs to `PLATFORM_OWNER_ID`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid5

from domain.chain import ChainedAggregate
from domain.errors import DomainError, check_aware
from domain.money import Money
from schemas.base import MAX_MINOR_UNITS

WALLET_NAMESPACE = UUID("6f1c2a4e-3b1d-5c7e-9a20-7d5b8c4e1f30")
PLATFORM_OWNER_ID = uuid5(WALLET_NAMESPACE, "bazaar.platform")
"""The well-known owner of the platform's fee-collecting wallets."""


class CreditSource(StrEnum):
    """Why money arrived in a wallet."""

    SALE = "sale"
    FEE = "fee"
    ROYALTY = "royalty"
    REFUND = "refund"


class WalletError(DomainError):
    """A wallet rule was broken."""

    code = "wallet.error"


class InsufficientFundsError(WalletError):
    """Not enough available money."""

    code = "wallet.insufficient_funds"


class WalletCurrencyMismatchError(WalletError):
    """The amount is not in the wallet's currency."""

    code = "wallet.currency_mismatch"


class InvalidWalletAmountError(WalletError):
    """Amounts moved must be positive."""

    code = "wallet.invalid_amount"


class InvalidCreditSourceError(WalletError):
    """Credits come from a sale, a fee, a royalty or a refund."""

    code = "wallet.invalid_source"


class BalanceLimitError(WalletError):
    """The move would take the wallet's balance (available plus held) past `MAX_MINOR_UNITS`."""

    code = "wallet.balance_limit"


class HoldExistsError(WalletError):
    """This wallet already holds money for the order."""

    code = "wallet.hold_exists"


class HoldNotFoundError(WalletError):
    """This wallet holds no money for the order."""

    code = "wallet.hold_not_found"


def wallet_id_for(owner_id: UUID, currency: str) -> UUID:
    """The id of `owner_id`'s wallet in `currency`."""
    return uuid5(WALLET_NAMESPACE, f"{owner_id}:{currency}")


class Wallet(ChainedAggregate):
    """A user's money in one currency: available plus holds per order."""

    class Event(ChainedAggregate.Event):
        """Base class of wallet events."""

    class Opened(Event, ChainedAggregate.Created):
        """A wallet was opened for an owner in a currency."""

        owner_id: UUID
        currency: str

    def __init__(self, owner_id: UUID, currency: str) -> None:
        self.owner_id = owner_id
        self.currency = Money.zero(currency).currency
        self.available_amount = 0
        self.holds: dict[UUID, int] = {}

    @classmethod
    def open(cls, *, owner_id: UUID, currency: str, now: datetime) -> Wallet:
        """Open `owner_id`'s wallet in `currency` (its id is `wallet_id_for(owner_id, currency)`)."""
        check_aware(now)
        Money.zero(currency)  # validates the currency code
        return cls._create_chained(cls.Opened, wallet_id_for(owner_id, currency), now,
                                   owner_id=owner_id, currency=currency)

    @property
    def available(self) -> Money:
        """Money that can be spent or withdrawn."""
        return Money(self.available_amount, self.currency)

    @property
    def held(self) -> Money:
        """Money held for orders, in total."""
        return Money(sum(self.holds.values()), self.currency)

    @property
    def total(self) -> Money:
        """Available plus held."""
        return self.available + self.held

    # Guards ------------------------------------------------------------------------------------------

    def check_amount(self, amount: Money) -> None:
        """Moves are positive and in the wallet's currency."""
        if amount.currency != self.currency:
            raise WalletCurrencyMismatchError(f"wallet is in {self.currency}", wallet_id=self.id)
        if amount.is_zero:
            raise InvalidWalletAmountError("amount must be positive", wallet_id=self.id)

    def check_available(self, amount: Money) -> None:
        """There must be enough available money."""
        if amount.amount > self.available_amount:
            raise InsufficientFundsError(
                f"needs {amount}, has {self.available}", wallet_id=self.id, available=self.available_amount
            )

    def check_room_for(self, amount: Money) -> None:
        """Money coming in must not take the balance past the bound every read model relies on."""
        balance = self.available_amount + sum(self.holds.values())
        if balance + amount.amount > MAX_MINOR_UNITS:
            raise BalanceLimitError(
                f"the balance may not exceed {MAX_MINOR_UNITS}", wallet_id=self.id, balance=balance,
                amount=amount.amount, limit=MAX_MINOR_UNITS,
            )

    def check_hold(self, order_id: UUID) -> None:
        """There must be a hold for the order."""
        if order_id not in self.holds:
            raise HoldNotFoundError(wallet_id=self.id, order_id=order_id)

    # Commands ----------------------------------------------------------------------------------------

    class Deposited(Event):
        """Money came in from outside (a payment provider); `reference` is its id there."""

        amount: int
        reference: str

        def apply(self, aggregate: Wallet) -> None:
            aggregate.available_amount += self.amount

    def deposit(self, *, amount: Money, reference: str, now: datetime) -> None:
        """Add money from outside the platform."""
        check_aware(now)
        self.check_amount(amount)
        self.check_room_for(amount)
        self._trigger(self.Deposited, now, amount=amount.amount, reference=reference)

    class Held(Event):
        """Money moved from available to a hold for an order."""

        order_id: UUID
        amount: int

        def apply(self, aggregate: Wallet) -> None:
            aggregate.available_amount -= self.amount
            aggregate.holds[self.order_id] = self.amount

    def hold(self, *, order_id: UUID, amount: Money, now: datetime) -> None:
        """Hold money for an order."""
        check_aware(now)
        self.check_amount(amount)
        if order_id in self.holds:
            raise HoldExistsError(wallet_id=self.id, order_id=order_id)
        self.check_available(amount)
        self._trigger(self.Held, now, order_id=order_id, amount=amount.amount)

    class HoldReleased(Event):
        """A hold was paid out: the money left this wallet (to be credited elsewhere)."""

        order_id: UUID
        amount: int

        def apply(self, aggregate: Wallet) -> None:
            del aggregate.holds[self.order_id]

    def release_hold(self, *, order_id: UUID, now: datetime) -> Money:
        """Pay out the whole hold for an order; returns the amount that left."""
        check_aware(now)
        self.check_hold(order_id)
        amount = Money(self.holds[order_id], self.currency)
        self._trigger(self.HoldReleased, now, order_id=order_id, amount=amount.amount)
        return amount

    class Credited(Event):
        """Money arrived from inside the platform (sale, fee, royalty or refund) for an order."""

        amount: int
        source: str
        order_id: UUID

        def apply(self, aggregate: Wallet) -> None:
            aggregate.available_amount += self.amount

    def credit(self, *, amount: Money, source: CreditSource | str, order_id: UUID, now: datetime) -> None:
        """Receive money paid out of another hold."""
        check_aware(now)
        self.check_amount(amount)
        try:
            source = CreditSource(source)
        except ValueError as exc:
            raise InvalidCreditSourceError(f"unknown credit source {source!r}") from exc
        self.check_room_for(amount)
        self._trigger(self.Credited, now, amount=amount.amount, source=source.value, order_id=order_id)

    class Withdrawn(Event):
        """Money left the platform (a payout); `reference` is the payout id."""

        amount: int
        reference: str

        def apply(self, aggregate: Wallet) -> None:
            aggregate.available_amount -= self.amount

    def withdraw(self, *, amount: Money, reference: str, now: datetime) -> None:
        """Pay available money out of the platform."""
        check_aware(now)
        self.check_amount(amount)
        self.check_available(amount)
        self._trigger(self.Withdrawn, now, amount=amount.amount, reference=reference)
