"""Schemas of Wallet events and commands."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from schemas.base import (
    CommandSchema,
    CreatedEventSchema,
    Currency,
    EventSchema,
    MoneyIn,
    PositiveMinorUnits,
    Reference,
)


class _WalletEvent(EventSchema):
    aggregate: ClassVar[str] = "wallet"


class WalletOpened(CreatedEventSchema):
    """A wallet was opened for an owner in a currency."""

    schema_name: ClassVar[str] = "WalletOpened"
    event_type: ClassVar[str] = "Wallet.Opened"
    aggregate: ClassVar[str] = "wallet"

    owner_id: UUID
    currency: Currency


class WalletDeposited(_WalletEvent):
    """Money came in from a payment provider."""

    schema_name: ClassVar[str] = "WalletDeposited"
    event_type: ClassVar[str] = "Wallet.Deposited"

    amount: PositiveMinorUnits
    reference: str


class WalletHeld(_WalletEvent):
    """Money moved from available to a hold for an order."""

    schema_name: ClassVar[str] = "WalletHeld"
    event_type: ClassVar[str] = "Wallet.Held"

    order_id: UUID
    amount: PositiveMinorUnits


class WalletHoldReleased(_WalletEvent):
    """A hold was paid out and left the wallet."""

    schema_name: ClassVar[str] = "WalletHoldReleased"
    event_type: ClassVar[str] = "Wallet.HoldReleased"

    order_id: UUID
    amount: PositiveMinorUnits


class WalletCredited(_WalletEvent):
    """Money arrived from inside the platform."""

    schema_name: ClassVar[str] = "WalletCredited"
    event_type: ClassVar[str] = "Wallet.Credited"

    amount: PositiveMinorUnits
    source: Literal["sale", "fee", "royalty", "refund"]
    order_id: UUID


class WalletWithdrawn(_WalletEvent):
    """Money was paid out of the platform."""

    schema_name: ClassVar[str] = "WalletWithdrawn"
    event_type: ClassVar[str] = "Wallet.Withdrawn"

    amount: PositiveMinorUnits
    reference: str


class OpenWallet(CommandSchema):
    """Open your wallet in a currency."""

    schema_name: ClassVar[str] = "OpenWallet"

    currency: Currency


class Deposit(CommandSchema):
    """Add money to your wallet in its currency; `reference` is the payment provider's id."""

    schema_name: ClassVar[str] = "Deposit"

    amount: MoneyIn
    reference: Reference


class WithdrawFunds(CommandSchema):
    """Pay available money out of your wallet; `reference` is the payout id."""

    schema_name: ClassVar[str] = "WithdrawFunds"

    amount: MoneyIn
    reference: Reference


EVENTS: tuple[type[EventSchema], ...] = (
    WalletOpened, WalletDeposited, WalletHeld, WalletHoldReleased, WalletCredited, WalletWithdrawn,
)
COMMANDS: tuple[type[CommandSchema], ...] = (OpenWallet, Deposit, WithdrawFunds)
