"""An order with its escrow state (rm_orders)."""

from __future__ import annotations

from uuid import UUID

from read_api.models import OrderPublic
from read_api.queries.rows import Conn, fetch_one

SQL = """
SELECT order_id, buyer_id, seller_id, listing_id, price_amount, currency, fee_amount, royalty_amount,
       seller_amount, status, escrow, dispute_reason, resolution, created_at, updated_at, version, position
FROM rm_orders WHERE order_id = %s
"""


def get_order(conn: Conn, order_id: UUID) -> OrderPublic | None:
    """The order, or None when no such order is projected."""
    row = fetch_one(conn, SQL, (order_id,))
    return None if row is None else OrderPublic.model_validate(row)
