"""Plain SQL helpers: rows as dicts, for pydantic models to validate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]
Params = Sequence[Any] | Mapping[str, Any]

# Columns of rm_listings a search hit or a neighbour shows.
SUMMARY_COLUMNS = (
    "l.listing_id, l.title, l.description, l.category, l.kind, l.status, l.price_amount, l.currency,"
    " l.condition_score, l.seller_id, l.created_at"
)


def fetch_one(conn: Conn, sql: str, params: Params = ()) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def fetch_all(conn: Conn, sql: str, params: Params = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall()
