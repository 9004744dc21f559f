"""`rm_listings`: everything a listing detail page shows (trust is joined from rm_trust when read).

The listing fold is written once, for any table: the search projection folds into its own state table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from psycopg.types.json import Jsonb

from projections.core import Handler, Handlers, Projection, Tables
from projections.read_models._sql import Cursor, params, setter
from schemas.base import EventSchema
from schemas.listing import (
    ListingBoosted,
    ListingDrafted,
    ListingEnriched,
    ListingPriceChanged,
    ListingPublished,
    ListingReinstated,
    ListingRelisted,
    ListingRevised,
    ListingSold,
    ListingSuspended,
    ListingWithdrawn,
)

TABLE = "rm_listings"
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


def listing_handlers(logical: str) -> dict[type[EventSchema], Handler]:
    """The listing fold into the table `logical` (the listing view's, or the search projection's state)."""

    def apply_listing_drafted(cur: Cursor, t: Tables, e: ListingDrafted, pos: int) -> None:
        cur.execute(
            f"INSERT INTO {t[logical]} (listing_id, seller_id, kind, title, description, category, price_amount,"
            " currency, status, attributes, creator_id, royalty_bps, created_at, updated_at, version, position)"
            " VALUES (%(id)s, %(seller)s, %(kind)s, %(title)s, %(desc)s, %(cat)s, %(price)s, %(cur)s, 'draft',"
            " %(attrs)s, %(creator)s, %(royalty)s, %(ts)s, %(ts)s, %(v)s, %(pos)s) ON CONFLICT DO NOTHING",
            params(e, pos, seller=e.seller_id, kind=e.kind, title=e.title, desc=e.description, cat=e.category,
                   price=e.price_amount, cur=e.currency, attrs=Jsonb(e.attributes), creator=e.creator_id,
                   royalty=e.royalty_bps),
        )

    def set_(assignments: str, **fields: str) -> Handler:
        return setter(logical, "listing_id", assignments, **fields)

    return {
        ListingDrafted: apply_listing_drafted,
        ListingRevised: set_("title = %(title)s, description = %(desc)s, category = %(cat)s, attributes = %(attrs)s",
                             title="title", desc="description", cat="category", attrs="attributes"),
        ListingPublished: set_("status = 'published'"),
        ListingPriceChanged: set_("price_amount = %(price)s, currency = %(cur)s", price="price_amount",
                                  cur="currency"),
        ListingEnriched: set_(
            "condition_score = %(score)s, image_hashes = %(hashes)s, model_id = %(model)s, model_version = %(mv)s",
            score="condition_score", hashes="image_hashes", model="model_id", mv="model_version",
        ),
        ListingBoosted: set_("boosted_until = %(until)s", until="until"),
        ListingSuspended: set_("status = 'suspended', suspended_reason = %(reason)s", reason="reason"),
        ListingReinstated: set_("status = 'published', suspended_reason = NULL"),
        ListingSold: set_("status = 'sold', sold_order_id = %(order)s", order="order_id"),
        ListingRelisted: set_("status = 'published', sold_order_id = NULL"),
        ListingWithdrawn: set_("status = 'withdrawn'"),
    }


class ListingsProjection(Projection):
    """`rm_listings`: everything a listing detail page shows."""

    name: ClassVar[str] = "listings"
    tables: ClassVar[Mapping[str, str]] = {TABLE: LISTINGS_DDL}
    handlers: ClassVar[Handlers] = listing_handlers(TABLE)
