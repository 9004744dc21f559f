"""One error shape for every 4xx: {"error": {"code", "message", "details"}}; codes are machine-readable."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from commands.application import ForbiddenError, VersionConflict
from commands.auth import AuthError
from commands.deps import BadHeader
from domain.errors import DomainError, NotFoundError, NotPartyError
from schemas.errors import error_body, validation_details


def domain_status(error: DomainError) -> int:
    """404 unknown, 403 not yours, 422 malformed value, 409 the aggregate's state forbids it."""
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ForbiddenError | NotPartyError):
        return 403
    if "invalid" in error.code or error.code.startswith("money.") or error.code == "idempotency.key_reused":
        return 422
    return 409


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the command side raises on bad input to its status and code."""

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        body = error_body("request.invalid", "the request is malformed", validation_details(exc.errors()))
        return JSONResponse(body, status_code=422)

    @app.exception_handler(ValidationError)
    async def _command_invalid(_: Request, exc: ValidationError) -> JSONResponse:
        body = error_body("request.invalid", "the command is malformed", validation_details(exc.errors()))
        return JSONResponse(body, status_code=422)

    @app.exception_handler(BadHeader)
    async def _bad_header(_: Request, exc: BadHeader) -> JSONResponse:
        return JSONResponse(error_body(exc.code, str(exc)), status_code=422)

    @app.exception_handler(AuthError)
    async def _unauthorised(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(error_body(exc.code, str(exc)), status_code=401, headers=headers)

    @app.exception_handler(VersionConflict)
    async def _conflict(_: Request, exc: VersionConflict) -> JSONResponse:
        details = {"aggregate_id": str(exc.aggregate_id), "current_version": exc.current_version}
        return JSONResponse(error_body("version.conflict", str(exc), details), status_code=409)

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        body = {"error": exc.to_dict()}
        return JSONResponse(body, status_code=domain_status(exc))
