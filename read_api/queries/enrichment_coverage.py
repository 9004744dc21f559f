"""How many published listings have a vector (rm_listing_vectors) and how many do not yet."""

from __future__ import annotations

from read_api.models import CoveragePublic
from read_api.queries.rows import Conn, fetch_all

SQL = (
    "SELECT count(*) AS published, count(v.listing_id) AS enriched FROM rm_listings l"
    " LEFT JOIN rm_listing_vectors v ON v.listing_id = l.listing_id WHERE l.status = 'published'"
)


def enrichment_coverage(conn: Conn) -> CoveragePublic:
    """Published listings with and without an embedding, over the whole catalogue (filters not applied)."""
    row = fetch_all(conn, SQL, {})[0]
    published, enriched = int(row["published"]), int(row["enriched"])
    return CoveragePublic(published=published, enriched=enriched, not_enriched=published - enriched,
                          ratio=enriched / published if published else 0.0)
