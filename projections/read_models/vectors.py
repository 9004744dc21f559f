"""`rm_listing_vectors`: the embedding a ListingEnriched event names, copied from `embedding_store`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from projections.core import Handlers, Projection, ProjectionDataError, Tables
from projections.read_models._sql import Cursor, params
from schemas.listing import ListingEnriched

TABLE = "rm_listing_vectors"
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


def apply_listing_enriched(cur: Cursor, t: Tables, e: ListingEnriched, pos: int) -> None:
    """Copy the stored vector; a ref missing from embedding_store is a poison event."""
    if e.embedding_ref is None:
        return
    cur.execute(
        f"INSERT INTO {t[TABLE]} AS r (listing_id, embedding, model_id, model_version, updated_at, version,"
        " position) SELECT %(id)s, s.vector, %(model)s, %(mv)s, %(ts)s, %(v)s, %(pos)s FROM embedding_store s"
        " WHERE s.ref = %(ref)s ON CONFLICT (listing_id) DO UPDATE SET embedding = EXCLUDED.embedding,"
        " model_id = EXCLUDED.model_id, model_version = EXCLUDED.model_version,"
        " updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, position = EXCLUDED.position"
        " WHERE r.version < EXCLUDED.version RETURNING listing_id",
        params(e, pos, model=e.model_id, mv=e.model_version, ref=e.embedding_ref),
    )
    if cur.fetchone() is None and not _vector_is_current(cur, t, e):
        raise ProjectionDataError(f"embedding_ref {e.embedding_ref!r} is not in embedding_store")


def _vector_is_current(cur: Cursor, t: Tables, e: ListingEnriched) -> bool:
    row = cur.execute(f"SELECT version FROM {t[TABLE]} WHERE listing_id = %s", (e.aggregate_id,)).fetchone()
    return row is not None and row[0] >= e.version


class VectorsProjection(Projection):
    """`rm_listing_vectors`, HNSW-indexed for semantic search."""

    name: ClassVar[str] = "vectors"
    tables: ClassVar[Mapping[str, str]] = {TABLE: VECTORS_DDL}
    shared_ddl: ClassVar[str] = EMBEDDING_STORE_DDL
    handlers: ClassVar[Handlers] = {ListingEnriched: apply_listing_enriched}
