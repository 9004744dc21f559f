"""What a projection is: a read model's tables (DDL) and its handlers keyed by event schema class.

The topics a projection reads are derived from its handlers (each schema class names its aggregate), so
searching for `OrderPlaced` lands in every read model that handles it, and nothing lists topics twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg

from schemas.base import EventSchema
from schemas.messages import header_value
from schemas.names import DOMAIN_AGGREGATES, TOPIC_PREFIX, domain_topic

NEXT_SUFFIX = "__next"
OLD_SUFFIX = "__old"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

# Errors that mean "try again later", never "this event is bad": they abort the batch, not the event.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, ConnectionError, TimeoutError)


class ProjectionDataError(ValueError):
    """An event that is valid on the wire but cannot be applied (missing reference, impossible state)."""


@dataclass(frozen=True)
class Record:
    """One consumed Kafka message, independent of the client library that fetched it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int = 0

    @property
    def notification_id(self) -> int | None:
        raw = header_value(self.headers, "notification_id")
        return int(raw) if raw is not None and raw.isdigit() else None


@dataclass(frozen=True)
class DeadLetter:
    """A record a projection could not apply, with the reason, bound for the dead-letter topic."""

    record: Record
    projection: str
    reason: str

    def headers(self) -> list[tuple[str, bytes]]:
        extra = [
            ("dlq_reason", self.reason[:2000].encode()),
            ("dlq_projection", self.projection.encode()),
            ("dlq_source_topic", self.record.topic.encode()),
            ("dlq_source_partition", str(self.record.partition).encode()),
            ("dlq_source_offset", str(self.record.offset).encode()),
        ]
        return [*self.record.headers, *extra]


class Tables:
    """Maps a projection's logical table names to the physical ones of one build (live or `__next`)."""

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix

    def __getitem__(self, logical: str) -> str:
        return f"{logical}{self.suffix}"


# (cursor, tables of this build, the decoded event, its notification id); the event is the key's class.
Handler = Callable[[psycopg.Cursor[Any], Tables, Any, int], None]
Handlers = Mapping[type[EventSchema], Handler]


class Projection:
    """A read model: table DDL (`{t}` = physical name) and handlers by event schema class."""

    name: ClassVar[str]
    # logical table name -> DDL creating it and its indexes, `{t}` standing for the physical name
    tables: ClassVar[Mapping[str, str]]
    handlers: ClassVar[Handlers]
    # tables the projection needs but never rebuilds (filled by other writers)
    shared_ddl: ClassVar[str] = ""

    @classmethod
    def aggregates(cls) -> tuple[str, ...]:
        """The aggregates whose events it handles, in the platform's topic order."""
        handled = {event.aggregate for event in cls.handlers}
        return tuple(aggregate for aggregate in DOMAIN_AGGREGATES if aggregate in handled)

    @classmethod
    def topics(cls, prefix: str = TOPIC_PREFIX) -> list[str]:
        return [domain_topic(aggregate, prefix) for aggregate in cls.aggregates()]

    @classmethod
    def handlers_by_name(cls) -> dict[str, Handler]:
        """Handlers by schema name: an upcast event is the latest class of its name."""
        return {event.schema_name: handler for event, handler in cls.handlers.items()}

    def after_batch(self, cur: psycopg.Cursor[Any], tables: Tables, events: Sequence[EventSchema]) -> None:
        """Hook run inside the batch transaction after the handlers (external stores write here)."""


def quote_ident(name: str) -> str:
    """A checked identifier: projection tables and schemas are ours, never user input, but check anyway."""
    if not _IDENT.match(name):
        raise ValueError(f"bad identifier {name!r}")
    return name


def connect(conninfo: str, schema: str) -> psycopg.Connection[Any]:
    """A connection whose search_path puts `schema` first (public stays reachable for the vector type)."""
    conn = psycopg.connect(conninfo, autocommit=False, prepare_threshold=None)
    _register_vector(conn)
    conn.execute(f"SET search_path TO {quote_ident(schema)}, public")
    conn.commit()
    return conn


def _register_vector(conn: psycopg.Connection[Any]) -> None:
    try:
        from pgvector.psycopg import register_vector

        register_vector(conn)
    except (ImportError, psycopg.ProgrammingError):
        pass
    conn.rollback()


def table_exists(cur: psycopg.Cursor[Any], name: str) -> bool:
    row = cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def schema_of(cur: psycopg.Cursor[Any]) -> str:
    row = cur.execute("SELECT current_schema()").fetchone()
    return str(row[0]) if row else "public"
