"""A seller's dashboard figures per currency (rm_seller_dashboard)."""

from __future__ import annotations

from uuid import UUID

from read_api.models import DashboardCurrencyPublic
from read_api.queries.rows import Conn, fetch_all

SQL = """
SELECT currency, listings_total, listings_published, orders_total, orders_completed, orders_refunded,
       revenue_amount, fees_amount, conversion, updated_at
FROM rm_seller_dashboard WHERE seller_id = %s ORDER BY currency
"""


def seller_dashboard(conn: Conn, seller_id: UUID) -> list[DashboardCurrencyPublic]:
    """The seller's rows, by currency (empty when none is projected)."""
    return [DashboardCurrencyPublic.model_validate(row) for row in fetch_all(conn, SQL, (seller_id,))]
