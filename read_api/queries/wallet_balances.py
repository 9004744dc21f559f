"""A user's wallets, one per currency (rm_wallets)."""

from __future__ import annotations

from uuid import UUID

from read_api.models import WalletBalancePublic
from read_api.queries.rows import Conn, fetch_all

SQL = """
SELECT wallet_id, currency, available, held, updated_at, version, position
FROM rm_wallets WHERE owner_id = %s ORDER BY currency
"""


def wallet_balances(conn: Conn, user_id: UUID) -> list[WalletBalancePublic]:
    """Every wallet the user owns, by currency (empty when none is projected)."""
    return [WalletBalancePublic.model_validate(row) for row in fetch_all(conn, SQL, (user_id,))]
