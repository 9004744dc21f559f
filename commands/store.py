"""The event store: eventsourcing's PostgreSQL recorder plus idempotency records and an append-only guard.

`BAZAAR_EVENT_STORE=memory` selects eventsourcing's in-memory (POPO) recorder instead, with the same
idempotency records and an in-memory key vault: the command handlers' unit tests run on it without services.
Both recorders write a batch's per-user key changes (crypto-shredding) with its events, all or nothing.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from commands.personal_data import (
    CREATE_KEY_TABLE,
    KeyChange,
    KeyShredded,
    PersonalDataVault,
    write_key_changes,
)
from infra.settings import Settings

# eventsourcing names the table after the Application ("Bazaar" → bazaar_events).
EVENTS_TABLE = "bazaar_events"


@dataclass(frozen=True)
class IdempotencyRecord:
    """A response to remember under a client's key, completed with the log positions once inserted."""

    key: str
    principal: str
    request_hash: str
    event_count: int
    response: dict[str, Any]


class CommandStore(ABC):
    """What the Marketplace needs of its recorder beyond eventsourcing's: idempotency records, the key vault.

    Events are inserted with `idempotency=[IdempotencyRecord, ...]`, one record per command of the batch, and
    `key_changes=[KeyChange, ...]`, the per-user keys the batch creates or destroys, in the same transaction.
    """

    @abstractmethod
    def find_idempotent_response(self, principal: str, key: str) -> tuple[str, dict[str, Any]] | None:
        """The (request hash, response) stored under a key, if a command with it was committed."""

    @abstractmethod
    def personal_data_vault(self) -> PersonalDataVault:
        """The per-user keys of crypto-shredding, kept beside this store."""


class BazaarRecorder(PostgresApplicationRecorder, CommandStore):
    """Writes idempotency records in the same transaction as the events they answer for."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        self.idempotency_table = Identifier(f"{self.events_table_name}_idempotency")
        self.insert_arrays_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[])"
            " RETURNING notification_id"
        ).format(schema=schema, table=table, id_type=Identifier(self.datastore.originator_id_type))
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {schema}.{idem} ("
                    " principal text NOT NULL, key text NOT NULL, request_hash text NOT NULL,"
                    " response jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),"
                    " PRIMARY KEY (principal, key))"
                ).format(schema=schema, idem=self.idempotency_table),
                SQL(CREATE_KEY_TABLE).format(),  # the vault reads this table; created with the events table
                # The log is immutable in the database itself, whoever connects.
                SQL(
                    "CREATE OR REPLACE FUNCTION {schema}.bazaar_refuse_change() RETURNS trigger"
                    " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION"
                    " 'the event log is append-only: % refused on %', TG_OP, TG_TABLE_NAME"
                    " USING ERRCODE = 'insufficient_privilege'; END $$"
                ).format(schema=schema),
                SQL(
                    "CREATE OR REPLACE TRIGGER bazaar_events_append_only"
                    " BEFORE UPDATE OR DELETE OR TRUNCATE ON {schema}.{table}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION {schema}.bazaar_refuse_change()"
                ).format(schema=schema, table=table),
            ]
        )

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # Same lock and notify as the base recorder, but the rows travel as four typed arrays in binary:
        # the base recorder's composite-type array is dumped as escaped text, which dominated batch saves.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_arrays_statement,
            (
                [event.originator_id for event in stored_events],
                [event.originator_version for event in stored_events],
                [event.topic for event in stored_events],
                [event.state for event in stored_events],
            ),
            binary=True,
        )

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Processes starting together (APIs, relay, projections) deadlock on CREATE OR REPLACE of the
        # same functions and triggers: take turns, for the length of this one transaction.
        curs.execute("SELECT pg_advisory_xact_lock(hashtext('bazaar.create_tables'))")
        super()._create_table(curs)

    def _fetch_ids_after_insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        records: Sequence[IdempotencyRecord] = kwargs.get("idempotency") or ()
        if records and ids is not None:
            self._insert_idempotency(curs, records, ids)
        if ids is not None:
            # In the events' transaction: a refused or crashed append creates or shreds no key.
            write_key_changes(curs, kwargs.get("key_changes") or ())
        return ids

    def _insert_idempotency(
        self, curs: Cursor[DictRow], records: Sequence[IdempotencyRecord], ids: Sequence[int]
    ) -> None:
        offsets = batch_offsets(records)
        statement = SQL(
            "INSERT INTO {schema}.{idem} (principal, key, request_hash, response) VALUES (%s, %s, %s, %s)"
        ).format(schema=Identifier(self.datastore.schema), idem=self.idempotency_table)
        rows = []
        for record, (start, count) in zip(records, offsets, strict=True):
            if record.key:
                response = {**record.response, "positions": list(ids[start : start + count])}
                rows.append((record.principal, record.key, record.request_hash, json.dumps(response)))
        if rows:
            curs.executemany(statement, rows)

    def find_idempotent_response(self, principal: str, key: str) -> tuple[str, dict[str, Any]] | None:
        statement = SQL("SELECT request_hash, response FROM {schema}.{idem} WHERE principal=%s AND key=%s").format(
            schema=Identifier(self.datastore.schema), idem=self.idempotency_table
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, (principal, key))
            row = curs.fetchone()
        return (row["request_hash"], row["response"]) if row else None

    def personal_data_vault(self) -> PersonalDataVault:
        return PersonalDataVault(self.datastore.get_connection)


class InMemoryRecorder(POPOApplicationRecorder, CommandStore):
    """eventsourcing's in-memory recorder, with idempotency records saved under the same lock as the events."""

    def __init__(self) -> None:
        super().__init__()
        self._responses: dict[tuple[str, str], tuple[str, str]] = {}
        self._vault = InMemoryVault()

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        # A key stored already refuses the whole insert, as the primary key does in PostgreSQL.
        super()._assert_uniqueness(stored_events, **kwargs)
        keys = [(record.principal, record.key) for record in kwargs.get("idempotency") or () if record.key]
        if len(set(keys)) < len(keys) or any(key in self._responses for key in keys):
            raise IntegrityError(f"idempotency key recorded already: {keys}")

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super()._update_table(stored_events, **kwargs)
        records: Sequence[IdempotencyRecord] = kwargs.get("idempotency") or ()
        if records and ids is not None:
            for record, (start, count) in zip(records, batch_offsets(records), strict=True):
                if record.key:
                    # Kept as JSON text, like the jsonb column: a reader gets its own copy.
                    response = {**record.response, "positions": list(ids[start : start + count])}
                    self._responses[record.principal, record.key] = (record.request_hash, json.dumps(response))
        if ids is not None:
            self._vault.apply(kwargs.get("key_changes") or ())  # under the lock that stores the events
        return ids

    def find_idempotent_response(self, principal: str, key: str) -> tuple[str, dict[str, Any]] | None:
        with self._database_lock:
            found = self._responses.get((principal, key))
        return (found[0], json.loads(found[1])) if found else None

    def personal_data_vault(self) -> PersonalDataVault:
        return self._vault


class InMemoryVault(PersonalDataVault):
    """The same AES-GCM vault with its per-user keys in a dict instead of the PostgreSQL table."""

    def __init__(self) -> None:  # no table to create
        self._keys: dict[UUID, bytes] = {}

    def apply(self, changes: Sequence[KeyChange]) -> None:
        """Store or delete keys, as the recorder does with the events that carry them."""
        for change in changes:
            if change.key is None:
                self._keys.pop(change.user_id, None)
            else:
                self._keys[change.user_id] = change.key

    def create_key(self, user_id: UUID) -> None:  # for tests of the vault alone; handlers use KeyChange
        self._keys.setdefault(user_id, AESGCM.generate_key(bit_length=256))

    def _key(self, user_id: UUID) -> bytes:
        try:
            return self._keys[user_id]
        except KeyError:
            raise KeyShredded(str(user_id)) from None

    def shred(self, user_id: UUID) -> None:  # for tests of the vault alone; handlers use KeyChange
        self._keys.pop(user_id, None)


class InMemoryFactory(POPOFactory):
    """eventsourcing's POPO persistence with Bazaar's recorder (POPOFactory takes no recorder topic)."""

    def application_recorder(self) -> ApplicationRecorder:
        return InMemoryRecorder()


def batch_offsets(records: Sequence[IdempotencyRecord]) -> list[tuple[int, int]]:
    """(first index, count) of each command's events within one batch insert."""
    offsets, start = [], 0
    for record in records:
        offsets.append((start, record.event_count))
        start += record.event_count
    return offsets


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's own settings, derived from ours (it reads a plain mapping, not the environment)."""
    cache = {"AGGREGATE_CACHE_MAXSIZE": "10000", "DEEPCOPY_FROM_AGGREGATE_CACHE": "y"}
    if settings.event_store == "memory":
        return {"PERSISTENCE_MODULE": get_topic(InMemoryFactory), **cache}
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": f"{BazaarRecorder.__module__}:{BazaarRecorder.__qualname__}",
        "POSTGRES_DBNAME": settings.pg_dbname,
        "POSTGRES_HOST": settings.pg_host,
        "POSTGRES_PORT": str(settings.pg_port),
        "POSTGRES_USER": settings.pg_user,
        "POSTGRES_PASSWORD": settings.pg_password,
        "POSTGRES_POOL_SIZE": str(settings.pg_pool_size),
        "POSTGRES_MAX_OVERFLOW": "10",
        **cache,
    }
