"""Where the log lives (an eventsourcing events table in PostgreSQL) and how the audit tools scan it."""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import Mapper
from psycopg import sql

from commands.audit.codec import FastMapper
from commands.audit.heads import HEADS_TABLE
from commands.store import EVENTS_TABLE, eventsourcing_env
from infra.settings import Settings

Row = tuple[int, str, int, str, bytes]
"""(notification_id, aggregate id as text, version, topic, state) of one stored event."""

FETCH_ROWS = 10_000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class LogSource:
    """The event log in PostgreSQL: database (from settings), schema and events table."""

    settings: Settings
    schema: str = "public"
    table: str = EVENTS_TABLE

    def __post_init__(self) -> None:
        for name in (self.schema, self.table):
            if not _NAME.fullmatch(name):
                raise ValueError(f"not a plain SQL identifier: {name!r}")
        if not self.table.endswith("_events"):
            raise ValueError("an eventsourcing events table is named <application>_events")

    @property
    def events(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def heads_table(self) -> sql.Identifier:
        return sql.Identifier(self.schema, HEADS_TABLE)

    def connect(self) -> psycopg.Connection[Any]:
        """A connection whose search_path is the log's schema (where HeadStore keeps the heads)."""
        return psycopg.connect(self.settings.pg_conninfo, options=f"-c search_path={self.schema}")

    def count(self) -> int:
        """How many events the table holds (for progress bars)."""
        with self.connect() as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.events)).fetchone()
        return int(row[0]) if row else 0

    def reader(self, pool_size: int = 2) -> Application[UUID]:
        """A read-only eventsourcing Application over the table: the store's mapper and repository.

        Marketplace registers no transcodings of its own (a test checks), so Application's are the store's.
        """
        name = self.table.removesuffix("_events")
        settings = self.settings.model_copy(update={"pg_pool_size": pool_size})
        env = {**eventsourcing_env(settings), "POSTGRES_SCHEMA": self.schema, "CREATE_TABLE": "n"}
        # Loading each aggregate once to compare it gains nothing from a cache.
        env["AGGREGATE_CACHE_MAXSIZE"] = ""
        cls = type(
            "BazaarLogReader",
            (Application,),
            {
                "name": name,
                "construct_mapper": _construct_fast_mapper,
            },
        )
        app: Application[UUID] = cls(env=env)
        return app


def _construct_fast_mapper(app: Application[UUID]) -> Mapper[UUID]:
    return FastMapper(transcoder=app.construct_transcoder())


def stream_rows(
    source: LogSource, *, after: int = 0, until: int | None = None, fetch: int = FETCH_ROWS
) -> Iterator[list[Row]]:
    """Batches of stored events in notification order (after < id <= until), read one batch ahead."""
    query = sql.SQL(
        "SELECT notification_id, originator_id::text, originator_version, topic, state"
        " FROM {} WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id"
    ).format(source.events)
    with source.connect() as conn, conn.cursor(name="bazaar_audit_scan", binary=True) as cursor:
        cursor.itersize = fetch
        cursor.execute(query, (after, until if until is not None else 2**63 - 1))
        yield from read_ahead(lambda: cursor.fetchmany(fetch))


def read_ahead(fetch: Callable[[], list[Any]]) -> Iterator[list[Any]]:
    """Yield fetch() results until one is empty, fetching the next on a thread meanwhile.

    psycopg waits for the server without the GIL, so PostgreSQL produces the next batch while the
    caller hashes this one.
    """
    batches: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                batch = fetch()
                _put(batches, batch, stop)
                if not batch:
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            _put(batches, exc, stop)

    worker = threading.Thread(target=produce, name="audit-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = batches.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            with suppress(queue.Empty):
                batches.get(timeout=0.05)
        worker.join()


def _put(batches: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            batches.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
