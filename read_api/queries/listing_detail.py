"""A listing's detail page: rm_listings joined with the seller's trust score."""

from __future__ import annotations

from uuid import UUID

from read_api.models import ListingPublic
from read_api.queries.rows import Conn, fetch_one

# Anyone may see these; drafts, suspended and withdrawn listings only their seller and admins.
PUBLIC_STATUSES = frozenset({"published", "sold"})

SQL = """
SELECT l.listing_id, l.seller_id, l.kind, l.title, l.description, l.category, l.price_amount, l.currency,
       l.status, l.attributes, l.creator_id, l.royalty_bps, l.condition_score, l.model_id, l.model_version,
       coalesce(l.image_hashes, '{}') AS image_hashes, l.boosted_until, l.suspended_reason, l.sold_order_id,
       l.created_at, l.updated_at, l.version, l.position, t.score AS seller_trust_score
FROM rm_listings l LEFT JOIN rm_trust t ON t.user_id = l.seller_id
WHERE l.listing_id = %s
"""


def get_listing(conn: Conn, listing_id: UUID) -> ListingPublic | None:
    """The listing, or None when no such listing is projected."""
    row = fetch_one(conn, SQL, (listing_id,))
    if row is None:
        return None
    row["attributes"] = row["attributes"] or {}
    return ListingPublic.model_validate(row)


def visible_to(listing: ListingPublic, user_id: UUID | None, is_admin: bool) -> bool:
    """Public statuses for all; the rest for the listing's seller and admins."""
    return listing.status in PUBLIC_STATUSES or is_admin or listing.seller_id == user_id
