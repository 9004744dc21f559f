"""Who is calling: argon2 password hashes, HS256 access tokens, roles."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from uuid import UUID

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from infra.secrets import stored_secret
from infra.settings import Settings

ROLES = ("admin", "seller", "buyer", "auditor")
_hasher = PasswordHasher()


class AuthError(Exception):
    """A credential was missing, wrong or expired; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def jwt_secret(settings: Settings) -> str:
    """The configured secret, or one generated once and kept under the project's secrets folder."""
    if settings.jwt_secret:
        return settings.jwt_secret
    return stored_secret(settings, "jwt.secret", lambda: secrets.token_urlsafe(48))


class TokenService:
    """Issues and checks access tokens."""

    algorithm = "HS256"

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self._ttl_s = ttl_s
        # Clients send the same token with every request and decoding costs more than the command
        # itself: a token's verified claims are remembered; its expiry is still checked on every use.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, user_id: UUID, role: str, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"sub": str(user_id), "role": role, "iat": issued, "exp": issued + self._ttl_s}
        return jwt.encode(claims, self._secret, algorithm=self.algorithm)

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires:
                return principal
            self._verified.pop(token, None)
            raise AuthError("auth.token_expired", "the access token has expired")
        principal, expires = self._decode(token)
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[self.algorithm], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("auth.token_expired", "the access token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("auth.token_invalid", "the access token is not valid") from exc
        if claims.get("role") not in ROLES:
            raise AuthError("auth.token_invalid", "the access token names no known role")
        return Principal(UUID(claims["sub"]), claims["role"]), float(claims["exp"])
