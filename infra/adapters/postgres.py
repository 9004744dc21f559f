"""The PostgreSQL connection pool, with pgvector's types registered on every connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from infra.settings import Settings

try:
    from pgvector.psycopg import register_vector
except ImportError:  # the adapter stays usable for plain tables without the pgvector package
    register_vector = None

Configure = Callable[[psycopg.Connection[Any]], None]


def make_pool(settings: Settings, **kw: Any) -> ConnectionPool:
    """An open pool on settings.pg_conninfo; keyword arguments override ConnectionPool's options."""
    configure: Configure | None = kw.pop("configure", None)
    options: dict[str, Any] = {
        "min_size": 1,
        "max_size": settings.pg_pool_size,
        "name": "bazaar",
        "open": True,
        **kw,
    }
    return ConnectionPool(settings.pg_conninfo, configure=_configure_with(configure), **options)


def _configure_with(extra: Configure | None) -> Configure:
    """Register pgvector first, then run the caller's own configure step, if any."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        _register_vector(conn)
        if extra is not None:
            extra(conn)

    return configure


def _register_vector(conn: psycopg.Connection[Any]) -> None:
    """vector/halfvec/sparsevec columns load as numpy arrays and pgvector objects, and dump from them."""
    if register_vector is None:
        return
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        pass  # a database without the extension: every other type still works
    finally:
        # The type lookups opened a transaction; the pool only accepts idle connections.
        conn.rollback()
