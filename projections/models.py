"""The PostgreSQL read models of docs/READ_MODELS.md: one projection per model, handlers per event schema.

Every handler is one SQL statement guarded by the aggregate version (`version < %(v)s`), so an event that a
row already reflects changes nothing. Timestamps come from the events, which makes a rebuild byte-equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import psycopg
from psycopg.types.json import Jsonb

from projections.core import Handler, Projection, ProjectionDataError, Tables
from schemas.base import EventSchema

Cursor = psycopg.Cursor[Any]

LISTINGS_DDL = """
CREATE TABLE {t} (
    listing_id uuid PRIMARY KEY, seller_id uuid NOT NULL, kind text NOT NULL, title text NOT NULL,
    description text NOT NULL, category text NOT NULL, price_amount bigint NOT NULL, currency text NOT NULL,
    status text NOT NULL, attributes jsonb NOT NULL, creator_id uuid, royalty_bps int NOT NULL,
    condition_score real, model_id text, model_version text, image_hashes text[] NOT NULL DEFAULT '{{}}',
    boosted_until timestamptz, suspended_reason text, sold_order_id uuid,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
CREATE INDEX ON {t} (seller_id);
CREATE INDEX ON {t} (status, category);
"""


def _params(event: EventSchema, position: int, **extra: Any) -> dict[str, Any]:
    return {"id": event.aggregate_id, "v": event.version, "ts": event.timestamp, "pos": position, **extra}


def _update(table: str, key: str, assignments: str) -> str:
    """An UPDATE of one row by aggregate id that only an event newer than the row can make."""
    return (
        f"UPDATE {table} SET {assignments}, updated_at = %(ts)s, version = %(v)s, position = %(pos)s"
        f" WHERE {key} = %(id)s AND version < %(v)s"
    )


# -- listings ----------------------------------------------------------------------------------------------


def listing_handlers(logical: str) -> dict[str, Handler]:
    """Listing-view handlers writing the table `logical` (shared by the listing view and the search state)."""

    def drafted(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
        cur.execute(
            f"INSERT INTO {t[logical]} (listing_id, seller_id, kind, title, description, category, price_amount,"
            " currency, status, attributes, creator_id, royalty_bps, created_at, updated_at, version, position)"
            " VALUES (%(id)s, %(seller)s, %(kind)s, %(title)s, %(desc)s, %(cat)s, %(price)s, %(cur)s, 'draft',"
            " %(attrs)s, %(creator)s, %(royalty)s, %(ts)s, %(ts)s, %(v)s, %(pos)s) ON CONFLICT DO NOTHING",
            _params(e, pos, seller=e.seller_id, kind=e.kind, title=e.title, desc=e.description, cat=e.category,
                    price=e.price_amount, cur=e.currency, attrs=Jsonb(e.attributes), creator=e.creator_id,
                    royalty=e.royalty_bps),
        )

    def setter(assignments: str, **fields: str) -> Handler:
        def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            values = {name: _value(getattr(e, attr)) for name, attr in fields.items()}
            cur.execute(_update(t[logical], "listing_id", assignments), _params(e, pos, **values))

        return handle

    return {
        "ListingDrafted": drafted,
        "ListingRevised": setter(
            "title = %(title)s, description = %(desc)s, category = %(cat)s, attributes = %(attrs)s",
            title="title", desc="description", cat="category", attrs="attributes",
        ),
        "ListingPublished": setter("status = 'published'"),
        "ListingPriceChanged": setter("price_amount = %(price)s, currency = %(cur)s", price="price_amount",
                                      cur="currency"),
        "ListingEnriched": setter(
            "condition_score = %(score)s, image_hashes = %(hashes)s, model_id = %(model)s,"
            " model_version = %(mv)s",
            score="condition_score", hashes="image_hashes", model="model_id", mv="model_version",
        ),
        "ListingBoosted": setter("boosted_until = %(until)s", until="until"),
        "ListingSuspended": setter("status = 'suspended', suspended_reason = %(reason)s", reason="reason"),
        "ListingReinstated": setter("status = 'published', suspended_reason = NULL"),
        "ListingSold": setter("status = 'sold', sold_order_id = %(order)s", order="order_id"),
        "ListingRelisted": setter("status = 'published', sold_order_id = NULL"),
        "ListingWithdrawn": setter("status = 'withdrawn'"),
    }


def _value(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict) else value


class ListingsProjection(Projection):
    """`rm_listings`: everything a listing detail page shows (trust is joined from rm_trust when read)."""

    name: ClassVar[str] = "listings"
    aggregates: ClassVar[tuple[str, ...]] = ("listing",)
    tables: ClassVar[Mapping[str, str]] = {"rm_listings": LISTINGS_DDL}

    def handlers(self) -> Mapping[str, Handler]:
        return listing_handlers("rm_listings")


# -- orders ------------------------------------------------------------------------------------------------

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


class OrdersProjection(Projection):
    """`rm_orders`: order status and escrow state ('pending', 'held', 'released', 'refunded')."""

    name: ClassVar[str] = "orders"
    aggregates: ClassVar[tuple[str, ...]] = ("order",)
    tables: ClassVar[Mapping[str, str]] = {"rm_orders": ORDERS_DDL}

    def handlers(self) -> Mapping[str, Handler]:
        def placed(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            cur.execute(
                f"INSERT INTO {t['rm_orders']} (order_id, buyer_id, seller_id, listing_id, price_amount,"
                " currency, status, escrow, created_at, updated_at, version, position) VALUES (%(id)s,"
                " %(buyer)s, %(seller)s, %(listing)s, %(price)s, %(cur)s, 'placed', 'pending', %(ts)s, %(ts)s,"
                " %(v)s, %(pos)s) ON CONFLICT DO NOTHING",
                _params(e, pos, buyer=e.buyer_id, seller=e.seller_id, listing=e.listing_id,
                        price=e.price_amount, cur=e.currency),
            )

        def setter(assignments: str, **fields: str) -> Handler:
            def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
                values = {name: getattr(e, attr) for name, attr in fields.items()}
                cur.execute(_update(t["rm_orders"], "order_id", assignments), _params(e, pos, **values))

            return handle

        return {
            "OrderPlaced": placed,
            "OrderFundsHeld": setter("status = 'funds_held', escrow = 'held'"),
            "OrderShipped": setter("status = 'shipped'"),
            "OrderDeliveryConfirmed": setter("status = 'delivered'"),
            "OrderReleased": setter(
                "status = 'released', escrow = 'released', seller_amount = %(s)s, fee_amount = %(f)s,"
                " royalty_amount = %(r)s", s="seller_amount", f="fee_amount", r="royalty_amount",
            ),
            "OrderCancelled": setter("status = 'cancelled'"),
            "OrderRefunded": setter("status = 'refunded', escrow = 'refunded'"),
            "OrderDisputeOpened": setter("status = 'disputed', dispute_reason = %(reason)s", reason="reason"),
            "OrderDisputeResolved": setter("status = 'resolved', resolution = %(outcome)s", outcome="outcome"),
        }


# -- wallets -----------------------------------------------------------------------------------------------

WALLETS_DDL = """
CREATE TABLE {t} (
    wallet_id uuid PRIMARY KEY, owner_id uuid NOT NULL, currency text NOT NULL,
    available bigint NOT NULL DEFAULT 0, held bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
CREATE INDEX ON {t} (owner_id);
"""


class WalletsProjection(Projection):
    """`rm_wallets`: available and held balances per wallet."""

    name: ClassVar[str] = "wallets"
    aggregates: ClassVar[tuple[str, ...]] = ("wallet",)
    tables: ClassVar[Mapping[str, str]] = {"rm_wallets": WALLETS_DDL}

    def handlers(self) -> Mapping[str, Handler]:
        def opened(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            cur.execute(
                f"INSERT INTO {t['rm_wallets']} (wallet_id, owner_id, currency, updated_at, version, position)"
                " VALUES (%(id)s, %(owner)s, %(cur)s, %(ts)s, %(v)s, %(pos)s) ON CONFLICT DO NOTHING",
                _params(e, pos, owner=e.owner_id, cur=e.currency),
            )

        def move(available: int, held: int) -> Handler:
            def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
                cur.execute(
                    _update(t["rm_wallets"], "wallet_id",
                            "available = available + %(da)s, held = held + %(dh)s"),
                    _params(e, pos, da=available * e.amount, dh=held * e.amount),
                )

            return handle

        return {
            "WalletOpened": opened,
            "WalletDeposited": move(1, 0),
            "WalletHeld": move(-1, 1),
            "WalletHoldReleased": move(0, -1),
            "WalletCredited": move(1, 0),
            "WalletWithdrawn": move(-1, 0),
        }


# -- seller dashboard --------------------------------------------------------------------------------------

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


class DashboardProjection(Projection):
    """`rm_seller_dashboard` per (seller, currency): listings, orders, proceeds released, fees, conversion.

    It reads two topics, whose relative order is not fixed: counters commute, and updated_at is the latest
    event time seen, so any interleaving gives the same row.
    """

    name: ClassVar[str] = "dashboard"
    aggregates: ClassVar[tuple[str, ...]] = ("listing", "order")
    tables: ClassVar[Mapping[str, str]] = {
        "rm_seller_dashboard": DASHBOARD_DDL,
        "rm_dashboard_listings": DASH_LISTINGS_DDL,
        "rm_dashboard_orders": DASH_ORDERS_DDL,
    }

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "ListingDrafted": self._first(
                "rm_dashboard_listings", "listing_id", "listings_total = d.listings_total + 1", listings_total=1
            ),
            "ListingPublished": self._flag("rm_dashboard_listings", "listing_id", "published",
                                           "listings_published = d.listings_published + 1"),
            "OrderPlaced": self._first("rm_dashboard_orders", "order_id", "orders_total = d.orders_total + 1",
                                       orders_total=1),
            "OrderReleased": self._flag(
                "rm_dashboard_orders", "order_id", "completed",
                "orders_completed = d.orders_completed + 1, revenue_amount = d.revenue_amount + %(seller_amount)s,"
                " fees_amount = d.fees_amount + %(fee_amount)s",
            ),
            "OrderRefunded": self._flag("rm_dashboard_orders", "order_id", "refunded",
                                        "orders_refunded = d.orders_refunded + 1"),
        }

    @staticmethod
    def _first(helper: str, key: str, increment: str, **initial: int) -> Handler:
        """The creation event: remember the aggregate once, then count it on its seller's row."""
        columns = ", ".join(initial)
        values = ", ".join(str(v) for v in initial.values())

        def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            cur.execute(
                f"WITH new AS (INSERT INTO {t[helper]} ({key}, seller_id, currency) VALUES (%(id)s, %(seller)s,"
                f" %(cur)s) ON CONFLICT DO NOTHING RETURNING seller_id, currency)"
                f" INSERT INTO {t['rm_seller_dashboard']} AS d (seller_id, currency, {columns}, updated_at)"
                f" SELECT seller_id, currency, {values}, %(ts)s FROM new"
                f" ON CONFLICT (seller_id, currency) DO UPDATE SET {increment},"
                f" updated_at = GREATEST(d.updated_at, %(ts)s)",
                _params(e, pos, seller=e.seller_id, cur=e.currency),
            )

        return handle

    @staticmethod
    def _flag(helper: str, key: str, flag: str, increment: str) -> Handler:
        """A counted transition: set the aggregate's flag once, and count it when it was not set."""

        def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            cur.execute(
                f"WITH hit AS (UPDATE {t[helper]} SET {flag} = true WHERE {key} = %(id)s AND NOT {flag}"
                f" RETURNING seller_id, currency)"
                f" UPDATE {t['rm_seller_dashboard']} AS d SET {increment},"
                f" updated_at = GREATEST(d.updated_at, %(ts)s) FROM hit"
                f" WHERE d.seller_id = hit.seller_id AND d.currency = hit.currency",
                _params(e, pos, **{k: v for k, v in e.model_dump().items() if k.endswith("_amount")}),
            )

        return handle


# -- licences ----------------------------------------------------------------------------------------------

LICENCES_DDL = """
CREATE TABLE {t} (
    licence_id uuid PRIMARY KEY, listing_id uuid NOT NULL, licensee_id uuid NOT NULL, kind text NOT NULL,
    status text NOT NULL, expires_at timestamptz, quota bigint, used bigint NOT NULL DEFAULT 0,
    issued_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
CREATE INDEX ON {t} (licensee_id, listing_id);
"""


class LicencesProjection(Projection):
    """`rm_licences`: what a licence check needs (status, expiry, quota and use)."""

    name: ClassVar[str] = "licences"
    aggregates: ClassVar[tuple[str, ...]] = ("licence",)
    tables: ClassVar[Mapping[str, str]] = {"rm_licences": LICENCES_DDL}

    def handlers(self) -> Mapping[str, Handler]:
        def issued(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            cur.execute(
                f"INSERT INTO {t['rm_licences']} (licence_id, listing_id, licensee_id, kind, status, expires_at,"
                " quota, issued_at, updated_at, version, position) VALUES (%(id)s, %(listing)s, %(licensee)s,"
                " %(kind)s, 'active', %(exp)s, %(quota)s, %(ts)s, %(ts)s, %(v)s, %(pos)s) ON CONFLICT DO NOTHING",
                _params(e, pos, listing=e.listing_id, licensee=e.licensee_id, kind=e.kind, exp=e.expires_at,
                        quota=e.quota),
            )

        def setter(assignments: str, **fields: str) -> Handler:
            def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
                values = {name: getattr(e, attr) for name, attr in fields.items()}
                cur.execute(_update(t["rm_licences"], "licence_id", assignments), _params(e, pos, **values))

            return handle

        return {
            "LicenceIssued": issued,
            "LicenceUsageRecorded": setter("used = used + %(units)s", units="units"),
            "LicenceRenewed": setter(
                "expires_at = COALESCE(%(exp)s, expires_at),"
                " quota = CASE WHEN quota IS NULL THEN NULL ELSE quota + COALESCE(%(added)s, 0) END,"
                " status = 'active'", exp="expires_at", added="added_quota",
            ),
            "LicenceRevoked": setter("status = 'revoked'"),
            "LicenceExpired": setter("status = 'expired'"),
        }


# -- trust -------------------------------------------------------------------------------------------------

TRUST_DDL = """
CREATE TABLE {t} (
    user_id uuid PRIMARY KEY, trust_id uuid NOT NULL UNIQUE, score int NOT NULL, formula_version int NOT NULL,
    signals int NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
"""


class TrustProjection(Projection):
    """`rm_trust` by user: score, formula version and signal count (trust_id is the aggregate id)."""

    name: ClassVar[str] = "trust"
    aggregates: ClassVar[tuple[str, ...]] = ("trust",)
    tables: ClassVar[Mapping[str, str]] = {"rm_trust": TRUST_DDL}

    def handlers(self) -> Mapping[str, Handler]:
        def started(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            cur.execute(
                f"INSERT INTO {t['rm_trust']} (user_id, trust_id, score, formula_version, updated_at, version,"
                " position) VALUES (%(user)s, %(id)s, %(score)s, %(fv)s, %(ts)s, %(v)s, %(pos)s)"
                " ON CONFLICT DO NOTHING",
                _params(e, pos, user=e.user_id, score=e.score, fv=e.formula_version),
            )

        def signal(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            cur.execute(_update(t["rm_trust"], "trust_id", "signals = signals + 1"), _params(e, pos))

        def recomputed(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            cur.execute(
                _update(t["rm_trust"], "trust_id",
                        "score = %(score)s, formula_version = %(fv)s, signals = %(n)s"),
                _params(e, pos, score=e.score, fv=e.formula_version, n=e.signal_count),
            )

        return {"TrustScoreStarted": started, "TrustSignalRecorded": signal, "TrustScoreRecomputed": recomputed}


# -- listing vectors ---------------------------------------------------------------------------------------

EMBEDDING_DIM = 384
EMBEDDING_STORE_DDL = f"""
CREATE TABLE IF NOT EXISTS embedding_store (
    ref text PRIMARY KEY, model_id text NOT NULL, vector vector({EMBEDDING_DIM}) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""
VECTORS_DDL = f"""
CREATE TABLE {{t}} (
    listing_id uuid PRIMARY KEY, embedding vector({EMBEDDING_DIM}) NOT NULL, model_id text NOT NULL,
    model_version text NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
CREATE INDEX ON {{t}} USING hnsw (embedding vector_cosine_ops);
"""


class VectorsProjection(Projection):
    """`rm_listing_vectors`: the embedding a ListingEnriched event names, copied from `embedding_store`."""

    name: ClassVar[str] = "vectors"
    aggregates: ClassVar[tuple[str, ...]] = ("listing",)
    tables: ClassVar[Mapping[str, str]] = {"rm_listing_vectors": VECTORS_DDL}
    shared_ddl: ClassVar[str] = EMBEDDING_STORE_DDL

    def handlers(self) -> Mapping[str, Handler]:
        def enriched(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
            if e.embedding_ref is None:
                return
            cur.execute(
                f"INSERT INTO {t['rm_listing_vectors']} AS r (listing_id, embedding, model_id, model_version,"
                " updated_at, version, position) SELECT %(id)s, s.vector, %(model)s, %(mv)s, %(ts)s, %(v)s,"
                " %(pos)s FROM embedding_store s WHERE s.ref = %(ref)s"
                " ON CONFLICT (listing_id) DO UPDATE SET embedding = EXCLUDED.embedding,"
                " model_id = EXCLUDED.model_id, model_version = EXCLUDED.model_version,"
                " updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, position = EXCLUDED.position"
                " WHERE r.version < EXCLUDED.version RETURNING listing_id",
                _params(e, pos, model=e.model_id, mv=e.model_version, ref=e.embedding_ref),
            )
            if cur.fetchone() is None and not _vector_is_current(cur, t, e):
                raise ProjectionDataError(f"embedding_ref {e.embedding_ref!r} is not in embedding_store")

        return {"ListingEnriched": enriched}


def _vector_is_current(cur: Cursor, t: Tables, e: Any) -> bool:
    row = cur.execute(
        f"SELECT version FROM {t['rm_listing_vectors']} WHERE listing_id = %s", (e.aggregate_id,)
    ).fetchone()
    return row is not None and row[0] >= e.version
