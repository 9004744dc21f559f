"""`embedding_store` (ref -> vector(384)): the worker writes a vector here before it names it in an event.

The table's DDL is the vectors projection's shared DDL (projections/read_models/vectors.py) repeated, since
a worker may not import a projection; both say `CREATE TABLE IF NOT EXISTS`, so whoever starts first makes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from pgvector.psycopg import register_vector

from gpu_workers.embedding import DIMENSIONS

TABLE = "embedding_store"
DDL = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS {TABLE} (
    ref text PRIMARY KEY, model_id text NOT NULL, vector vector({DIMENSIONS}) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


class EmbeddingStore:
    """One connection; every write is one transaction, refs already stored keep their first vector."""

    def __init__(self, conninfo: str) -> None:
        self._conn: psycopg.Connection[Any] = psycopg.connect(conninfo, autocommit=True)
        self._conn.execute(DDL)
        register_vector(self._conn)

    def existing(self, refs: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Vectors already stored under these refs (a restarted worker reuses them instead of re-encoding)."""
        if not refs:
            return {}
        rows = self._conn.execute(f"SELECT ref, vector FROM {TABLE} WHERE ref = ANY(%s)", (list(refs),)).fetchall()
        return {ref: np.asarray(vector, dtype=np.float32) for ref, vector in rows}

    def put(self, model_id: str, vectors: dict[str, NDArray[np.float32]]) -> None:
        """Store new vectors in one transaction; a ref that exists is left as it is."""
        if not vectors:
            return
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {TABLE} (ref, model_id, vector) VALUES (%s, %s, %s) ON CONFLICT (ref) DO NOTHING",
                [(ref, model_id, vector) for ref, vector in vectors.items()],
            )

    def close(self) -> None:
        self._conn.close()
