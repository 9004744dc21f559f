"""The error handlers both HTTP APIs install: one shape, {"error": {"code", "message", "details"}}, for every 4xx.

Each API adds the handlers of its own exceptions (domain errors, read errors) on top of these.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.tokens import AccessDenied, AuthError
from schemas.errors import error_body, validation_details


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in the one shape both APIs answer with."""
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, *, not_found_code: str = "http.not_found") -> None:
    """Malformed requests (422), missing or bad credentials (401), forbidden (403), routing errors (404, 405)."""

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "request.invalid", "the request is malformed", validation_details(exc.errors()))

    @app.exception_handler(AuthError)
    async def _unauthorised(_: Request, exc: AuthError) -> JSONResponse:
        return error_response(401, exc.code, str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(AccessDenied)
    async def _forbidden(_: Request, exc: AccessDenied) -> JSONResponse:
        return error_response(403, exc.code, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (not UTF-8, say): malformed, like bad JSON
            return error_response(422, "request.invalid", str(exc.detail))
        code = not_found_code if exc.status_code == 404 else f"http.{exc.status_code}"
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))
