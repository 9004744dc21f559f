"""The read API's errors and their one shape, shared with the command API: {"error": {code, message, details}}."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from infra.adapters.search import SearchError
from infra.http_errors import error_response
from infra.http_errors import install_error_handlers as install_shared_handlers

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
    """The shared handlers (infra.http_errors) plus the read side's own: reads, search and store faults."""
    install_shared_handlers(app, not_found_code="read.not_found")

    @app.exception_handler(ReadError)
    async def _read(_: Request, exc: ReadError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc), exc.details)

    @app.exception_handler(SearchError)
    async def _search_down(_: Request, exc: SearchError) -> JSONResponse:
        log.warning("read.search.failed", error=str(exc))
        message = (
            "the search index does not exist yet: start the projections (./run up)"
            if exc.status == 404 else "the search index did not answer"
        )
        return error_response(503, "search.unavailable", message)

    @app.exception_handler(psycopg.errors.UndefinedTable)
    async def _model_missing(_: Request, exc: psycopg.errors.UndefinedTable) -> JSONResponse:
        log.warning("read.model.missing", error=str(exc).splitlines()[0])
        return error_response(503, "read.model_missing", "a read model table does not exist yet: start the projections",
                              {"error": str(exc).splitlines()[0]})

    @app.exception_handler(psycopg.OperationalError)
    async def _store_down(_: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("read.store.failed", error=str(exc))
        return error_response(503, "store.unavailable", "the read store did not answer")
