"""Against the real local PostgreSQL (started by `./run up`): pgvector HNSW search and durable settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from infra.adapters.postgres import make_pool
from infra.settings import Settings

pytestmark = pytest.mark.integration

EMBEDDINGS = {
    "red lamp": [1.0, 0.0, 0.0],
    "green chair": [0.0, 1.0, 0.0],
    "blue desk": [0.0, 0.0, 1.0],
    "teal sofa": [0.0, 0.7, 0.7],
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    """Settings of the running server; fails (not skips) when PostgreSQL is down: these tests need it."""
    settings = Settings()
    error = _connect_error(settings)
    if error:
        pytest.fail(
            f"PostgreSQL is not answering on {settings.pg_host}:{settings.pg_port}: "
            f"start the local services with `./run up` ({error})",
            pytrace=False,
        )
    return settings


def _connect_error(settings: Settings) -> str | None:
    try:
        with psycopg.connect(settings.pg_conninfo, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip()


@pytest.fixture(scope="module")
def pool(settings: Settings) -> Iterator[ConnectionPool]:
    with make_pool(settings, min_size=1, max_size=2) as pool:
        yield pool


@pytest.fixture
def vector_table(pool: ConnectionPool) -> Iterator[sql.Identifier]:
    """A table of its own with an HNSW cosine index, filled with EMBEDDINGS and dropped afterwards."""
    table = sql.Identifier(f"test_vectors_{uuid.uuid4().hex[:12]}")
    with pool.connection() as conn:
        create = "CREATE TABLE {} (name text PRIMARY KEY, embedding vector(3) NOT NULL)"
        conn.execute(sql.SQL(create).format(table))
        conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(table))
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} (name, embedding) VALUES (%s, %s)").format(table),
                [(name, np.array(vector, dtype=np.float32)) for name, vector in EMBEDDINGS.items()],
            )
    try:
        yield table
    finally:
        with pool.connection() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def _nearest(conn: psycopg.Connection[Any], table: sql.Identifier, query: list[float]) -> tuple[str, Any]:
    row = conn.execute(
        sql.SQL("SELECT name, embedding FROM {} ORDER BY embedding <=> %s LIMIT 1").format(table),
        [np.array(query, dtype=np.float32)],
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_hnsw_index_finds_the_nearest_listing(pool: ConnectionPool, vector_table: sql.Identifier) -> None:
    with pool.connection() as conn:
        # Four rows would be scanned sequentially; turn that off so the query goes through the HNSW index.
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = conn.execute(
            sql.SQL("EXPLAIN SELECT name FROM {} ORDER BY embedding <=> %s LIMIT 1").format(vector_table),
            [np.array([0.0, 1.0, 0.0], dtype=np.float32)],
        ).fetchall()
        assert "Index Scan using" in " ".join(line for (line,) in plan)

        name, embedding = _nearest(conn, vector_table, [0.1, 0.9, 0.2])
        assert name == "green chair"
        assert isinstance(embedding, np.ndarray)  # pgvector's adapter is registered on pool connections
        assert np.allclose(embedding, EMBEDDINGS["green chair"])
        assert _nearest(conn, vector_table, [0.0, 0.6, 0.5])[0] == "teal sofa"
        assert _nearest(conn, vector_table, [0.9, 0.1, 0.0])[0] == "red lamp"


def test_pgvector_is_0_8(pool: ConnectionPool) -> None:
    with pool.connection() as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert row is not None and row[0].startswith("0.8."), row


def test_server_is_durable(pool: ConnectionPool) -> None:
    names = ["fsync", "synchronous_commit", "full_page_writes", "data_checksums"]
    with pool.connection() as conn:
        rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [names]).fetchall()
    assert dict(rows) == {name: "on" for name in names}
