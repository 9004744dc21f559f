"""Crypto-shredding: personal data is stored in events only as ciphertext under a per-user key.

Deleting a user's key makes every copy of their personal data unreadable, while the event log stays
immutable and verifiable.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import Connection

KEY_TABLE = "bazaar_user_keys"


class KeyShredded(Exception):
    """The user's key was deleted: their personal data is gone for good."""


class PersonalDataVault:
    """Per-user AES-256-GCM keys in PostgreSQL; encrypt on write, decrypt on read, shred on forget."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Connection[Any]]]) -> None:
        self._connect = connect
        with connect() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {KEY_TABLE} (user_id uuid PRIMARY KEY, key bytea NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            )

    def create_key(self, user_id: UUID) -> None:
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO {KEY_TABLE} (user_id, key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (user_id, AESGCM.generate_key(bit_length=256)),
            )

    def _key(self, user_id: UUID) -> bytes:
        with self._connect() as conn:
            row = conn.execute(f"SELECT key FROM {KEY_TABLE} WHERE user_id=%s", (user_id,)).fetchone()
        if row is None:
            raise KeyShredded(str(user_id))
        return bytes(row["key"] if isinstance(row, dict) else row[0])

    def encrypt(self, user_id: UUID, data: dict[str, Any]) -> str:
        nonce = os.urandom(12)
        # The user id is bound as associated data so a ciphertext cannot be moved to another user.
        sealed = AESGCM(self._key(user_id)).encrypt(nonce, json.dumps(data).encode(), user_id.bytes)
        return base64.b64encode(nonce + sealed).decode()

    def decrypt(self, user_id: UUID, ciphertext: str) -> dict[str, Any]:
        raw = base64.b64decode(ciphertext)
        plain = AESGCM(self._key(user_id)).decrypt(raw[:12], raw[12:], user_id.bytes)
        result: dict[str, Any] = json.loads(plain)
        return result

    def shred(self, user_id: UUID) -> None:
        with self._connect() as conn:
            conn.execute(f"DELETE FROM {KEY_TABLE} WHERE user_id=%s", (user_id,))
