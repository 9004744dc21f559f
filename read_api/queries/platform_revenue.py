"""The platform's revenue and escrow per currency, summed over rm_orders (the orders read model).

Fees and royalties are fixed on an order when it is released (`OrderReleased` carries them), and the
escrow state says where the buyer's money is: so one pass over rm_orders gives every figure, in step
with the order view (`?after=` waits on the orders projection alone).
"""

from __future__ import annotations

from read_api.models import CurrencyRevenuePublic
from read_api.queries.rows import Conn, fetch_all

# Sums stay numeric (no bigint cast): many orders of up to 10**15 minor units each may pass bigint.
SQL = """
SELECT currency,
       coalesce(sum(fee_amount) FILTER (WHERE escrow = 'released'), 0) AS fees_amount,
       coalesce(sum(royalty_amount) FILTER (WHERE escrow = 'released'), 0) AS royalties_paid_amount,
       coalesce(sum(price_amount) FILTER (WHERE escrow = 'held'), 0) AS escrow_held_amount,
       coalesce(sum(price_amount) FILTER (WHERE escrow = 'released'), 0) AS sales_released_amount,
       coalesce(sum(price_amount) FILTER (WHERE escrow = 'refunded'), 0) AS refunded_amount,
       count(*) FILTER (WHERE escrow = 'released') AS orders_released,
       count(*) FILTER (WHERE escrow = 'held') AS orders_in_escrow,
       count(*) FILTER (WHERE escrow = 'refunded') AS orders_refunded,
       max(updated_at) AS updated_at
FROM rm_orders GROUP BY currency ORDER BY currency
"""


def platform_revenue(conn: Conn) -> list[CurrencyRevenuePublic]:
    """One row per currency that has orders (empty before the first order)."""
    return [CurrencyRevenuePublic.model_validate(row) for row in fetch_all(conn, SQL)]
