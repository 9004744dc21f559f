"""`rm_wallets`: available and held balances per wallet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from projections.core import Handler, Handlers, Projection, Tables
from projections.read_models._sql import Cursor, params, update_sql
from schemas.wallet import (
    WalletCredited,
    WalletDeposited,
    WalletHeld,
    WalletHoldReleased,
    WalletOpened,
    WalletWithdrawn,
)

TABLE = "rm_wallets"
WALLETS_DDL = """
CREATE TABLE {t} (
    wallet_id uuid PRIMARY KEY, owner_id uuid NOT NULL, currency text NOT NULL,
    available bigint NOT NULL DEFAULT 0, held bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
CREATE INDEX ON {t} (owner_id);
"""


def apply_wallet_opened(cur: Cursor, t: Tables, e: WalletOpened, pos: int) -> None:
    cur.execute(
        f"INSERT INTO {t[TABLE]} (wallet_id, owner_id, currency, updated_at, version, position)"
        " VALUES (%(id)s, %(owner)s, %(cur)s, %(ts)s, %(v)s, %(pos)s) ON CONFLICT DO NOTHING",
        params(e, pos, owner=e.owner_id, cur=e.currency),
    )


def _move(available: int, held: int) -> Handler:
    """A handler moving the event's amount between the balances by these signs."""

    def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
        cur.execute(update_sql(t[TABLE], "wallet_id", "available = available + %(da)s, held = held + %(dh)s"),
                    params(e, pos, da=available * e.amount, dh=held * e.amount))

    return handle


class WalletsProjection(Projection):
    """`rm_wallets`: available and held balances per wallet."""

    name: ClassVar[str] = "wallets"
    tables: ClassVar[Mapping[str, str]] = {TABLE: WALLETS_DDL}
    handlers: ClassVar[Handlers] = {
        WalletOpened: apply_wallet_opened,
        WalletDeposited: _move(1, 0),
        WalletHeld: _move(-1, 1),
        WalletHoldReleased: _move(0, -1),
        WalletCredited: _move(1, 0),
        WalletWithdrawn: _move(-1, 0),
    }
