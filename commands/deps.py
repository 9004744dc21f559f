"""FastAPI dependencies of the command API: the application, the caller, Idempotency-Key, If-Match.

They are `async` because they do no I/O: FastAPI runs plain functions in its thread pool, one hop each.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from commands.application import Marketplace
from commands.auth import AuthError, Principal, TokenService

_bearer = HTTPBearer(auto_error=False)


class BadHeader(Exception):
    """A header is present but malformed (HTTP 422)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def get_app(request: Request) -> Marketplace:
    app: Marketplace = request.app.state.marketplace
    return app


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise AuthError("auth.missing_token", "send Authorization: Bearer <token> from POST /v1/auth/token")
    tokens: TokenService = request.app.state.tokens
    return tokens.verify(credentials.credentials)


async def get_if_match(
    if_match: Annotated[str | None, Header(description="expected aggregate version")] = None,
) -> int | None:
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise BadHeader("header.if_match_invalid", "If-Match must be an aggregate version number")
    return int(value)


async def get_idempotency_key(
    idempotency_key: Annotated[str | None, Header(description="retry-safe key, up to 200 characters")] = None,
) -> str | None:
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise BadHeader("header.idempotency_key_invalid", "Idempotency-Key must be 1 to 200 characters")
    return idempotency_key


App = Annotated[Marketplace, Depends(get_app)]
Actor = Annotated[Principal, Depends(get_principal)]
IfMatch = Annotated[int | None, Depends(get_if_match)]
IdempotencyKey = Annotated[str | None, Depends(get_idempotency_key)]
