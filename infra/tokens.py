"""Access tokens both APIs verify: HS256 JWTs bound to a per-user token generation checked on every request.

A token names its user's generation when it is issued. Forgetting the user, changing their role and an
admin's (or the user's own) revoke bump the generation, so every token issued before is refused at once, by
the command API and the read API alike. PostgreSQL keeps the generations (the source of truth); Redis caches
them for the per-request check, and a cached value only ever grows (so a slow reader never caches an old one).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import jwt
import psycopg
import redis
import structlog

from infra.adapters.redis import make_redis
from infra.secrets import stored_secret
from infra.settings import Settings
from schemas import names

log = structlog.get_logger(__name__)
ROLES = ("admin", "seller", "buyer", "auditor")
GENERATIONS_TABLE = names.TOKEN_GENERATIONS_TABLE
# SET the key to ARGV[1] unless it already holds a larger value; answer the value kept.
_RAISE_TO = """
local kept = tonumber(redis.call('GET', KEYS[1]) or '-1')
local offered = tonumber(ARGV[1])
if offered > kept then redis.call('SET', KEYS[1], ARGV[1]); return offered end
return kept
"""


def cache_key(user_id: UUID) -> str:
    """The Redis key caching a user's token generation."""
    return f"{names.TOKEN_GENERATION_KEY_PREFIX}{user_id}"


class AuthError(Exception):
    """A credential was missing, wrong, expired or revoked (HTTP 401); `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AccessDenied(Exception):
    """The caller is known but may not touch this resource (HTTP 403, code `auth.forbidden`)."""

    code = "auth.forbidden"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def owns_or_admin(self, *owner_ids: object) -> bool:
        """Whether the caller is one of `owner_ids` or an admin."""
        return self.is_admin or self.user_id in owner_ids


def require_owner_or_admin(caller: Principal, *owner_ids: object, message: str) -> None:
    """Refuse (403) callers who are neither one of the resource's owners nor an admin."""
    if not caller.owns_or_admin(*owner_ids):
        raise AccessDenied(message)


def jwt_secret(settings: Settings) -> str:
    """The configured secret, or one generated once and kept under the project's secrets folder."""
    if settings.jwt_secret:
        return settings.jwt_secret
    return stored_secret(settings, "jwt.secret", lambda: secrets.token_urlsafe(48))


class TokenService:
    """Issues and decodes access tokens (signature, expiry, role); the generation is checked by `TokenVerifier`."""

    algorithm = "HS256"

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self._ttl_s = ttl_s
        # Clients send the same token with every request and decoding costs more than the command
        # itself: a token's verified claims are remembered; its expiry is still checked on every use.
        self._verified: dict[str, tuple[Principal, int, float]] = {}

    def issue(self, user_id: UUID, role: str, now: float | None = None, generation: int = 0) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"sub": str(user_id), "role": role, "gen": generation, "iat": issued, "exp": issued + self._ttl_s}
        return jwt.encode(claims, self._secret, algorithm=self.algorithm)

    def verify(self, token: str) -> Principal:
        """The token's principal; generation not checked (see `TokenVerifier.verify`)."""
        return self.decode(token)[0]

    def decode(self, token: str) -> tuple[Principal, int]:
        """The token's principal and the generation it was issued under."""
        known = self._verified.get(token)
        if known is not None:
            principal, generation, expires = known
            if time.time() < expires:
                return principal, generation
            self._verified.pop(token, None)
            raise AuthError("auth.token_expired", "the access token has expired")
        principal, generation, expires = self._decode(token)
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = (principal, generation, expires)
        return principal, generation

    def _decode(self, token: str) -> tuple[Principal, int, float]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[self.algorithm], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("auth.token_expired", "the access token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("auth.token_invalid", "the access token is not valid") from exc
        generation = claims.get("gen", 0)
        if claims.get("role") not in ROLES or not isinstance(generation, int) or isinstance(generation, bool):
            raise AuthError("auth.token_invalid", "the access token names no known role or generation")
        try:
            user_id = UUID(str(claims["sub"]))
        except ValueError as exc:
            raise AuthError("auth.token_invalid", "the access token names no user") from exc
        return Principal(user_id, claims["role"]), generation, float(claims["exp"])


class Generations(Protocol):
    """Where each user's token generation lives."""

    def current(self, user_id: UUID) -> int: ...

    def bump(self, user_id: UUID) -> int: ...


class InMemoryGenerations:
    """Generations in a dict: for the write side's in-memory event store (one process, nothing kept)."""

    def __init__(self) -> None:
        self._generations: dict[UUID, int] = {}

    def current(self, user_id: UUID) -> int:
        return self._generations.get(user_id, 0)

    def bump(self, user_id: UUID) -> int:
        self._generations[user_id] = self.current(user_id) + 1
        return self._generations[user_id]


class TokenGenerations:
    """Per-user token generations: PostgreSQL row (truth), Redis key (cache read on every request)."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self._conninfo = settings.pg_conninfo
        self._redis = client or make_redis(settings)
        self._raise_to = self._redis.register_script(_RAISE_TO)
        with self._connect() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {GENERATIONS_TABLE}"
                " (user_id uuid PRIMARY KEY, generation bigint NOT NULL)"
            )

    def _connect(self) -> psycopg.Connection[Any]:
        # Rare (a cache miss, a revoke): a connection of its own rather than a pool held by every process.
        return psycopg.connect(self._conninfo, autocommit=True)

    def current(self, user_id: UUID) -> int:
        """The user's generation: from Redis, else from PostgreSQL (and cached)."""
        key = cache_key(user_id)
        try:
            cached: str | None = self._redis.get(key)  # type: ignore[assignment]  # sync client
        except redis.RedisError as exc:
            log.warning("tokens.cache.unavailable", error=str(exc))
            return self._stored(user_id)
        if cached is not None:
            return int(cached)
        return self._cache(key, self._stored(user_id))

    def bump(self, user_id: UUID) -> int:
        """Invalidate every token issued to the user so far; returns the new generation."""
        with self._connect() as conn:
            row = conn.execute(
                f"INSERT INTO {GENERATIONS_TABLE} AS g (user_id, generation) VALUES (%s, 1)"
                " ON CONFLICT (user_id) DO UPDATE SET generation = g.generation + 1 RETURNING g.generation",
                (user_id,),
            ).fetchone()
        generation = int(row[0]) if row else 1
        return self._cache(cache_key(user_id), generation)

    def _stored(self, user_id: UUID) -> int:
        with self._connect() as conn:
            row = conn.execute(f"SELECT generation FROM {GENERATIONS_TABLE} WHERE user_id=%s", (user_id,)).fetchone()
        return int(row[0]) if row else 0

    def _cache(self, key: str, generation: int) -> int:
        try:
            return int(self._raise_to(keys=[key], args=[generation]))
        except redis.RedisError as exc:
            log.warning("tokens.cache.unavailable", error=str(exc))
            return generation

    def close(self) -> None:
        self._redis.close()


class TokenVerifier:
    """Issues tokens under the user's current generation and refuses any token of an older one."""

    def __init__(self, tokens: TokenService, generations: Generations) -> None:
        self.tokens = tokens
        self.generations = generations

    @classmethod
    def from_settings(cls, settings: Settings, generations: Generations | None = None) -> TokenVerifier:
        return cls(TokenService(jwt_secret(settings), settings.jwt_ttl_s), generations or TokenGenerations(settings))

    def issue(self, user_id: UUID, role: str) -> str:
        return self.tokens.issue(user_id, role, generation=self.generations.current(user_id))

    def verify(self, token: str) -> Principal:
        """The caller of a valid, unexpired token whose generation is still the user's current one."""
        principal, generation = self.tokens.decode(token)
        if generation < self.generations.current(principal.user_id):
            raise AuthError("auth.token_revoked", "the access token was revoked: log in again")
        return principal
