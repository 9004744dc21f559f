"""`rm_orders`: order status and escrow state ('pending', 'held', 'released', 'refunded')."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import ClassVar

from projections.core import Handlers, Projection, Tables
from projections.read_models._sql import Cursor, params, setter
from schemas.order import (
    OrderCancelled,
    OrderDeliveryConfirmed,
    OrderDisputeOpened,
    OrderDisputeResolved,
    OrderFundsHeld,
    OrderPlaced,
    OrderRefunded,
    OrderReleased,
    OrderShipped,
)

TABLE = "rm_orders"
ORDERS_DDL = """
CREATE TABLE {t} (
    order_id uuid PRIMARY KEY, buyer_id uuid NOT NULL, seller_id uuid NOT NULL, listing_id uuid NOT NULL,
    price_amount bigint NOT NULL, currency text NOT NULL, fee_amount bigint NOT NULL DEFAULT 0,
    royalty_amount bigint NOT NULL DEFAULT 0, seller_amount bigint NOT NULL DEFAULT 0, status text NOT NULL,
    escrow text NOT NULL, dispute_reason text, resolution text,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
CREATE INDEX ON {t} (buyer_id);
CREATE INDEX ON {t} (seller_id);
"""


# A handler setting columns of this table's row (assignments, then param -> event attribute).
_set = partial(setter, TABLE, "order_id")


def apply_order_placed(cur: Cursor, t: Tables, e: OrderPlaced, pos: int) -> None:
    cur.execute(
        f"INSERT INTO {t[TABLE]} (order_id, buyer_id, seller_id, listing_id, price_amount, currency, status,"
        " escrow, created_at, updated_at, version, position) VALUES (%(id)s, %(buyer)s, %(seller)s,"
        " %(listing)s, %(price)s, %(cur)s, 'placed', 'pending', %(ts)s, %(ts)s, %(v)s, %(pos)s)"
        " ON CONFLICT DO NOTHING",
        params(e, pos, buyer=e.buyer_id, seller=e.seller_id, listing=e.listing_id, price=e.price_amount,
               cur=e.currency),
    )


class OrdersProjection(Projection):
    """`rm_orders`: order status and escrow state."""

    name: ClassVar[str] = "orders"
    tables: ClassVar[Mapping[str, str]] = {TABLE: ORDERS_DDL}
    handlers: ClassVar[Handlers] = {
        OrderPlaced: apply_order_placed,
        OrderFundsHeld: _set("status = 'funds_held', escrow = 'held'"),
        OrderShipped: _set("status = 'shipped'"),
        OrderDeliveryConfirmed: _set("status = 'delivered'"),
        OrderReleased: _set(
            "status = 'released', escrow = 'released', seller_amount = %(s)s, fee_amount = %(f)s,"
            " royalty_amount = %(r)s", s="seller_amount", f="fee_amount", r="royalty_amount",
        ),
        OrderCancelled: _set("status = 'cancelled'"),
        OrderRefunded: _set("status = 'refunded', escrow = 'refunded'"),
        OrderDisputeOpened: _set("status = 'disputed', dispute_reason = %(reason)s", reason="reason"),
        OrderDisputeResolved: _set("status = 'resolved', resolution = %(outcome)s", outcome="outcome"),
    }
