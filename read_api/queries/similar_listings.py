"""Listings whose embedding is nearest to a given listing's, among vectors of the same model."""

from __future__ import annotations

from uuid import UUID

from read_api.models import ListingSummaryPublic
from read_api.queries.nearest_listings import nearest_listings
from read_api.queries.rows import Conn, fetch_one

SQL = "SELECT embedding, model_id FROM rm_listing_vectors WHERE listing_id = %s"


def similar_listings(conn: Conn, listing_id: UUID, limit: int) -> list[ListingSummaryPublic]:
    """Up to `limit` published neighbours, nearest first; empty when the listing has no vector."""
    row = fetch_one(conn, SQL, (listing_id,))
    if row is None:
        return []
    return nearest_listings(conn, row["embedding"], limit, exclude=listing_id, model_id=row["model_id"])
