"""`rm_seller_dashboard` per (seller, currency): listings, orders, proceeds released, fees, conversion.

It reads two topics, whose relative order is not fixed: counters commute, and updated_at is the latest
event time seen, so any interleaving gives the same row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from projections.core import Handler, Handlers, Projection, Tables
from projections.read_models._sql import Cursor, params
from schemas.listing import ListingDrafted, ListingPublished
from schemas.order import OrderPlaced, OrderRefunded, OrderReleased

TABLE = "rm_seller_dashboard"
LISTINGS_SEEN = "rm_dashboard_listings"
ORDERS_SEEN = "rm_dashboard_orders"
DASHBOARD_DDL = """
CREATE TABLE {t} (
    seller_id uuid NOT NULL, currency text NOT NULL,
    listings_total int NOT NULL DEFAULT 0, listings_published int NOT NULL DEFAULT 0,
    orders_total int NOT NULL DEFAULT 0, orders_completed int NOT NULL DEFAULT 0,
    orders_refunded int NOT NULL DEFAULT 0, revenue_amount bigint NOT NULL DEFAULT 0,
    fees_amount bigint NOT NULL DEFAULT 0,
    conversion real GENERATED ALWAYS AS (
        CASE WHEN listings_published > 0 THEN orders_completed::real / listings_published ELSE 0 END
    ) STORED,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (seller_id, currency)
);
"""
# Which listing/order counts a seller row already holds: the once-only guard of each counter.
DASH_LISTINGS_DDL = """
CREATE TABLE {t} (listing_id uuid PRIMARY KEY, seller_id uuid NOT NULL, currency text NOT NULL,
                  published boolean NOT NULL DEFAULT false);
"""
DASH_ORDERS_DDL = """
CREATE TABLE {t} (order_id uuid PRIMARY KEY, seller_id uuid NOT NULL, currency text NOT NULL,
                  completed boolean NOT NULL DEFAULT false, refunded boolean NOT NULL DEFAULT false);
"""


def _first(helper: str, key: str, increment: str, **initial: int) -> Handler:
    """The creation event: remember the aggregate once, then count it on its seller's row."""
    columns = ", ".join(initial)
    values = ", ".join(str(v) for v in initial.values())

    def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
        cur.execute(
            f"WITH new AS (INSERT INTO {t[helper]} ({key}, seller_id, currency) VALUES (%(id)s, %(seller)s,"
            f" %(cur)s) ON CONFLICT DO NOTHING RETURNING seller_id, currency)"
            f" INSERT INTO {t[TABLE]} AS d (seller_id, currency, {columns}, updated_at)"
            f" SELECT seller_id, currency, {values}, %(ts)s FROM new"
            f" ON CONFLICT (seller_id, currency) DO UPDATE SET {increment},"
            f" updated_at = GREATEST(d.updated_at, %(ts)s)",
            params(e, pos, seller=e.seller_id, cur=e.currency),
        )

    return handle


def _flag(helper: str, key: str, flag: str, increment: str) -> Handler:
    """A counted transition: set the aggregate's flag once, and count it when it was not set."""

    def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
        cur.execute(
            f"WITH hit AS (UPDATE {t[helper]} SET {flag} = true WHERE {key} = %(id)s AND NOT {flag}"
            f" RETURNING seller_id, currency)"
            f" UPDATE {t[TABLE]} AS d SET {increment},"
            f" updated_at = GREATEST(d.updated_at, %(ts)s) FROM hit"
            f" WHERE d.seller_id = hit.seller_id AND d.currency = hit.currency",
            params(e, pos, **{k: v for k, v in e.model_dump().items() if k.endswith("_amount")}),
        )

    return handle


class DashboardProjection(Projection):
    """`rm_seller_dashboard` per (seller, currency), with its once-only helper tables."""

    name: ClassVar[str] = "dashboard"
    tables: ClassVar[Mapping[str, str]] = {
        TABLE: DASHBOARD_DDL, LISTINGS_SEEN: DASH_LISTINGS_DDL, ORDERS_SEEN: DASH_ORDERS_DDL,
    }
    handlers: ClassVar[Handlers] = {
        ListingDrafted: _first(LISTINGS_SEEN, "listing_id", "listings_total = d.listings_total + 1",
                               listings_total=1),
        ListingPublished: _flag(LISTINGS_SEEN, "listing_id", "published",
                                "listings_published = d.listings_published + 1"),
        OrderPlaced: _first(ORDERS_SEEN, "order_id", "orders_total = d.orders_total + 1", orders_total=1),
        OrderReleased: _flag(
            ORDERS_SEEN, "order_id", "completed",
            "orders_completed = d.orders_completed + 1, revenue_amount = d.revenue_amount + %(seller_amount)s,"
            " fees_amount = d.fees_amount + %(fee_amount)s",
        ),
        OrderRefunded: _flag(ORDERS_SEEN, "order_id", "refunded", "orders_refunded = d.orders_refunded + 1"),
    }
