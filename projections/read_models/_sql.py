"""SQL building blocks shared by the read models: parameters of an event and version-guarded updates."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from projections.core import Handler, Tables
from schemas.base import EventSchema

Cursor = psycopg.Cursor[Any]


def params(event: EventSchema, position: int, **extra: Any) -> dict[str, Any]:
    """The parameters every statement may use: id, version, event time and log position."""
    return {"id": event.aggregate_id, "v": event.version, "ts": event.timestamp, "pos": position, **extra}


def update_sql(table: str, key: str, assignments: str) -> str:
    """An UPDATE of one row by aggregate id that only an event newer than the row can make."""
    return (
        f"UPDATE {table} SET {assignments}, updated_at = %(ts)s, version = %(v)s, position = %(pos)s"
        f" WHERE {key} = %(id)s AND version < %(v)s"
    )


def setter(logical: str, key: str, assignments: str, **fields: str) -> Handler:
    """A handler setting columns of the row keyed by the event's aggregate id; `fields`: param -> event attr."""

    def handle(cur: Cursor, t: Tables, e: Any, pos: int) -> None:
        values = {name: _value(getattr(e, attr)) for name, attr in fields.items()}
        cur.execute(update_sql(t[logical], key, assignments), params(e, pos, **values))

    return handle


def _value(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict) else value
