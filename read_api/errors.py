"""The read API's errors and their one shape, shared with the command API: {"error": {code, message, details}}."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from commands.auth import AuthError
from infra.adapters.search import SearchError
from schemas.errors import error_body, validation_details

log = structlog.get_logger(__name__)


class ReadError(Exception):
    """A read that cannot be answered as asked; `status` and `code` go to the client."""

    status = 400
    code = "read.error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class NotFound(ReadError):
    """No read-model row has this id."""

    status = 404
    code = "read.not_found"


class Forbidden(ReadError):
    """The caller may not see this row."""

    status = 403
    code = "auth.forbidden"


class InvalidRequest(ReadError):
    """A parameter is well-formed but not acceptable (cross-field rules checked after parsing)."""

    status = 422
    code = "request.invalid"


class NotCaughtUp(ReadError):
    """`?after=` asked for a position the projection had not applied within the wait limit."""

    status = 408
    code = "read.not_caught_up"


class SemanticUnavailable(ReadError):
    """Semantic search needs the embedding model, which this process cannot load."""

    status = 503
    code = "semantic.unavailable"


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a read can raise to its status and code."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        body = error_body("request.invalid", "the request is malformed", validation_details(exc.errors()))
        return JSONResponse(body, status_code=422)

    @app.exception_handler(ReadError)
    async def _read(_: Request, exc: ReadError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, str(exc), exc.details), status_code=exc.status)

    @app.exception_handler(AuthError)
    async def _unauthorised(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(error_body(exc.code, str(exc)), status_code=401, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "read.not_found" if exc.status_code == 404 else f"http.{exc.status_code}"
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(SearchError)
    async def _search_down(_: Request, exc: SearchError) -> JSONResponse:
        log.warning("read.search.failed", error=str(exc))
        message = (
            "the search index does not exist yet: start the projections (./run up)"
            if exc.status == 404 else "the search index did not answer"
        )
        return JSONResponse(error_body("search.unavailable", message), status_code=503)

    @app.exception_handler(psycopg.errors.UndefinedTable)
    async def _model_missing(_: Request, exc: psycopg.errors.UndefinedTable) -> JSONResponse:
        log.warning("read.model.missing", error=str(exc).splitlines()[0])
        body = error_body("read.model_missing", "a read model table does not exist yet: start the projections",
                          {"error": str(exc).splitlines()[0]})
        return JSONResponse(body, status_code=503)

    @app.exception_handler(psycopg.OperationalError)
    async def _store_down(_: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("read.store.failed", error=str(exc))
        return JSONResponse(error_body("store.unavailable", "the read store did not answer"), status_code=503)
