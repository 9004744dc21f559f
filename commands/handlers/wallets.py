"""Wallets: deposits and withdrawals (payment-provider references are recorded, not processed here)."""

from __future__ import annotations

from uuid import UUID

from commands.application import Change, Marketplace
from commands.auth import Principal
from commands.handlers import require_not_forgotten, require_role, require_self_or_admin
from domain.money import Money
from schemas.wallet import Deposit, WithdrawFunds


def deposit(app: Marketplace, actor: Principal, user_id: UUID, cmd: Deposit) -> Change:
    require_self_or_admin(actor, user_id)
    require_role(actor, "buyer", "seller")
    require_not_forgotten(app, user_id)
    wallet = app.wallet(user_id, cmd.amount.currency)
    wallet.deposit(amount=Money(cmd.amount.amount, cmd.amount.currency), reference=cmd.reference, now=app.now())
    return Change(wallet, body=_balances(wallet))


def withdraw_funds(app: Marketplace, actor: Principal, user_id: UUID, cmd: WithdrawFunds) -> Change:
    require_self_or_admin(actor, user_id)
    require_not_forgotten(app, user_id)
    wallet = app.wallet(user_id, cmd.amount.currency)
    wallet.withdraw(amount=Money(cmd.amount.amount, cmd.amount.currency), reference=cmd.reference, now=app.now())
    return Change(wallet, body=_balances(wallet))


def _balances(wallet: object) -> dict[str, int | str]:
    return {
        "available": wallet.available.amount,  # type: ignore[attr-defined]
        "held": wallet.held.amount,  # type: ignore[attr-defined]
        "currency": wallet.currency,  # type: ignore[attr-defined]
    }
