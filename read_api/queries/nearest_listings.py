"""Published listings nearest to an embedding (pgvector HNSW over rm_listing_vectors, cosine distance)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from read_api.models import ListingSummaryPublic
from read_api.queries.rows import SUMMARY_COLUMNS, Conn, fetch_all


@dataclass(frozen=True)
class ListingFilters:
    """Filters shared by keyword and semantic search; prices in minor units, bounds inclusive."""

    status: str = "published"
    category: str | None = None
    kind: str | None = None
    price_min: int | None = None
    price_max: int | None = None
    condition_min: float | None = None


def nearest_listings(conn: Conn, embedding: Sequence[float] | Any, limit: int, offset: int = 0,
                     filters: ListingFilters = ListingFilters(), exclude: UUID | None = None,
                     model_id: str | None = None) -> list[ListingSummaryPublic]:
    """Listings passing `filters`, nearest first, with score = cosine similarity."""
    where, params = _where(filters, exclude, model_id)
    sql = (
        f"SELECT {SUMMARY_COLUMNS}, 1 - (v.embedding <=> %(q)s::vector) AS score"
        " FROM rm_listing_vectors v JOIN rm_listings l ON l.listing_id = v.listing_id"
        f" WHERE {' AND '.join(where)}"
        " ORDER BY v.embedding <=> %(q)s::vector LIMIT %(limit)s OFFSET %(offset)s"
    )
    params.update(q=embedding, limit=limit, offset=offset)
    with conn.transaction():
        # Keep walking the HNSW graph until enough rows pass the filters (pgvector >= 0.8), in exact order.
        conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        rows = fetch_all(conn, sql, params)
    return [ListingSummaryPublic.model_validate(row) for row in rows]


def count_nearest(conn: Conn, filters: ListingFilters, cap: int) -> int:
    """How many listings with a vector pass `filters`, counted up to `cap` (the semantic ranking depth)."""
    where, params = _where(filters, None, None)
    sql = (
        "SELECT count(*) AS n FROM (SELECT 1 FROM rm_listing_vectors v"
        " JOIN rm_listings l ON l.listing_id = v.listing_id"
        f" WHERE {' AND '.join(where)} LIMIT %(cap)s) capped"
    )
    rows = fetch_all(conn, sql, {**params, "cap": cap})
    return int(rows[0]["n"])


def _where(filters: ListingFilters, exclude: UUID | None, model_id: str | None) -> tuple[list[str], dict[str, Any]]:
    clauses = ["l.status = %(status)s"]
    params: dict[str, Any] = {"status": filters.status}
    optional = {
        "l.category = %(category)s": ("category", filters.category),
        "l.kind = %(kind)s": ("kind", filters.kind),
        "l.price_amount >= %(price_min)s": ("price_min", filters.price_min),
        "l.price_amount <= %(price_max)s": ("price_max", filters.price_max),
        "l.condition_score >= %(condition_min)s": ("condition_min", filters.condition_min),
        "v.listing_id <> %(exclude)s": ("exclude", exclude),
        "v.model_id = %(model_id)s": ("model_id", model_id),
    }
    for clause, (name, value) in optional.items():
        if value is not None:
            clauses.append(clause)
            params[name] = value
    return clauses, params
