"""Crypto-shredding: personal data is stored in events only as ciphertext under a per-user key.

Deleting a user's key makes every copy of their personal data unreadable, while the event log stays
immutable and verifiable. Keys are created and deleted only as `KeyChange`s that the recorder writes in the
transaction appending the user's `Registered` / `Forgotten` event: both happen or neither does.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import Connection, Cursor

KEY_TABLE = "bazaar_user_keys"
CREATE_KEY_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {KEY_TABLE} (user_id uuid PRIMARY KEY, key bytea NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now())"
)
# The user's Registered event is in the same transaction and clashes if the user exists, so a row found
# here belongs to no registered user (an orphan of a failed registration): the new key replaces it.
_UPSERT_KEY = (
    f"INSERT INTO {KEY_TABLE} (user_id, key) VALUES (%s, %s)"
    " ON CONFLICT (user_id) DO UPDATE SET key = EXCLUDED.key, created_at = now()"
)
_DELETE_KEY = f"DELETE FROM {KEY_TABLE} WHERE user_id=%s"


class KeyShredded(Exception):
    """The user's key was deleted: their personal data is gone for good."""


@dataclass(frozen=True)
class KeyChange:
    """A per-user key to store (`key` set) or to destroy (`key` None), committed with the user's events."""

    user_id: UUID
    key: bytes | None

    @classmethod
    def new_key(cls, user_id: UUID) -> KeyChange:
        return cls(user_id, AESGCM.generate_key(bit_length=256))

    @classmethod
    def shred(cls, user_id: UUID) -> KeyChange:
        return cls(user_id, None)

    def seal(self, data: dict[str, Any]) -> str:
        """Encrypt with the key this change will store (registration encrypts before the key is committed)."""
        assert self.key is not None, "a shredding change has no key to encrypt with"
        return seal(self.key, self.user_id, data)


def seal(key: bytes, user_id: UUID, data: dict[str, Any]) -> str:
    nonce = os.urandom(12)
    # The user id is bound as associated data so a ciphertext cannot be moved to another user.
    sealed = AESGCM(key).encrypt(nonce, json.dumps(data).encode(), user_id.bytes)
    return base64.b64encode(nonce + sealed).decode()


def unseal(key: bytes, user_id: UUID, ciphertext: str) -> dict[str, Any]:
    raw = base64.b64decode(ciphertext)
    result: dict[str, Any] = json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], user_id.bytes))
    return result


def write_key_changes(curs: Cursor[Any], changes: Sequence[KeyChange]) -> None:
    """Store or delete keys in the caller's transaction (the one appending the users' events)."""
    upserts = [(change.user_id, change.key) for change in changes if change.key is not None]
    deletes = [(change.user_id,) for change in changes if change.key is None]
    if upserts:
        curs.executemany(_UPSERT_KEY, upserts)
    if deletes:
        curs.executemany(_DELETE_KEY, deletes)


class PersonalDataVault:
    """Per-user AES-256-GCM keys in PostgreSQL: decrypt on read; keys change only with their events."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Connection[Any]]]) -> None:
        self._connect = connect
        with connect() as conn:
            conn.execute(CREATE_KEY_TABLE)

    def _key(self, user_id: UUID) -> bytes:
        with self._connect() as conn:
            row = conn.execute(f"SELECT key FROM {KEY_TABLE} WHERE user_id=%s", (user_id,)).fetchone()
        if row is None:
            raise KeyShredded(str(user_id))
        return bytes(row["key"] if isinstance(row, dict) else row[0])

    def has_key(self, user_id: UUID) -> bool:
        try:
            self._key(user_id)
        except KeyShredded:
            return False
        return True

    def encrypt(self, user_id: UUID, data: dict[str, Any]) -> str:
        return seal(self._key(user_id), user_id, data)

    def decrypt(self, user_id: UUID, ciphertext: str) -> dict[str, Any]:
        return unseal(self._key(user_id), user_id, ciphertext)
