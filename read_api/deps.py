"""FastAPI dependencies of the read API: its context, a connection with `?after=`, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from infra.tokens import AuthError, Principal, TokenVerifier
from read_api.config import ReadApiConfig
from read_api.consistency import Waiter
from read_api.search import ListingSearch

_bearer = HTTPBearer(auto_error=False, description="a token from the command API's POST /v1/auth/token")


@dataclass
class ReadContext:
    """What every read needs, built once per app (see read_api.app.create_app)."""

    config: ReadApiConfig
    pool: ConnectionPool
    search: ListingSearch
    tokens: TokenVerifier  # checks the user's token generation too: a revoked token is refused at once
    waiter: Waiter


class Reader:
    """The request's `?after=` position and a read-store connection, taken from the pool on first use."""

    def __init__(self, pool: ConnectionPool, waiter: Waiter, position: int | None) -> None:
        self.waiter = waiter
        self.position = position
        self._pool = pool
        self._lease: AbstractContextManager[psycopg.Connection[Any]] | None = None
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        # Lazily: a keyword search without `?after=` never touches PostgreSQL.
        if self._conn is None:
            self._lease = self._pool.connection()
            self._conn = self._lease.__enter__()
        return self._conn

    def catch_up(self, *projections: str) -> None:
        """Wait (bounded, 408 after) until the projections have applied `?after=`; at once without it."""
        if self.position is not None:
            self.waiter.wait(self.conn, projections, self.position)

    def release(self) -> None:
        if self._lease is not None:
            self._lease.__exit__(None, None, None)
            self._lease = self._conn = None


def get_context(request: Request) -> ReadContext:
    context: ReadContext = request.app.state.reads
    return context


Context = Annotated[ReadContext, Depends(get_context)]
AfterParam = Annotated[
    int | None,
    Query(ge=0, description="a command's log position: answer only once this read reflects it (408 if not soon)"),
]


def get_reader(context: Context, after: AfterParam = None) -> Iterator[Reader]:
    reader = Reader(context.pool, context.waiter, after)
    try:
        yield reader
    finally:
        reader.release()


def _verify(context: ReadContext, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None:
        raise AuthError("auth.missing_token", "send Authorization: Bearer <token> from POST /v1/auth/token")
    return context.tokens.verify(credentials.credentials)


def get_caller(
    context: Context, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    return _verify(context, credentials)


def get_optional_caller(
    context: Context, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    # No token is anonymous; a bad or expired one is still a 401, never silently anonymous.
    return None if credentials is None else _verify(context, credentials)


Read = Annotated[Reader, Depends(get_reader)]
Caller = Annotated[Principal, Depends(get_caller)]
MaybeCaller = Annotated[Principal | None, Depends(get_optional_caller)]
