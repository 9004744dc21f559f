"""Who is calling: argon2 password hashes here; tokens, principals and roles are `infra.tokens` (both APIs use them)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from infra.tokens import ROLES, AuthError, Principal, TokenService, TokenVerifier, jwt_secret

__all__ = ["ROLES", "AuthError", "Principal", "TokenService", "TokenVerifier", "hash_password", "jwt_secret",
           "password_matches"]
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False
