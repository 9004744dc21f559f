"""FastAPI dependencies of the command API: the application, the caller, Idempotency-Key, If-Match.

They are `async` because they do no blocking I/O of note (a Redis GET at most): FastAPI runs plain
functions in its thread pool, one hop each. Routes list the caller first, so a request without a token
is answered 401 before its headers or body are looked at.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import WithJsonSchema

from commands.application import Marketplace
from infra.tokens import AuthError, Principal, TokenVerifier

IF_MATCH_PATTERN = r'^(W/)?"?[0-9]{1,18}"?$'
_bearer = HTTPBearer(auto_error=False, description="a token from POST /v1/auth/token")


async def get_app(request: Request) -> Marketplace:
    app: Marketplace = request.app.state.marketplace
    return app


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise AuthError("auth.missing_token", "send Authorization: Bearer <token> from POST /v1/auth/token")
    tokens: TokenVerifier = request.app.state.tokens
    return tokens.verify(credentials.credentials)


async def get_if_match(
    if_match: Annotated[
        str | None,
        Header(pattern=IF_MATCH_PATTERN, description='expected aggregate version, e.g. 3 or "3"'),
        WithJsonSchema({"type": "string", "pattern": IF_MATCH_PATTERN}),  # absent or a string, never null
    ] = None,
) -> int | None:
    return None if if_match is None else int(if_match.removeprefix("W/").strip('"'))


async def get_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="retry-safe key, 1 to 200 characters"),
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200}),
    ] = None,
) -> str | None:
    return idempotency_key


App = Annotated[Marketplace, Depends(get_app)]
Actor = Annotated[Principal, Depends(get_principal)]
IfMatch = Annotated[int | None, Depends(get_if_match)]
IdempotencyKey = Annotated[str | None, Depends(get_idempotency_key)]
