"""What the read API's OpenAPI document says of errors and auth, for every router of the read API to reuse."""

from __future__ import annotations

from typing import Any

from read_api.models import ErrorPublic

# What each error status of the read API means; every body is ErrorPublic.
ERROR_STATUSES: dict[int, str] = {
    401: "No, an invalid or an expired bearer token (`auth.*`).",
    403: "The caller may not read this (`auth.forbidden`).",
    404: "No such row in the read model (`read.not_found`).",
    408: "`?after=` was not reached within the wait limit (`read.not_caught_up`); retry.",
    409: "`?after=` names a position the projection dead-lettered (`read.position_dead_lettered`).",
    422: "A malformed or out-of-range parameter (`request.invalid`); `details` lists each reason.",
    429: "Too many requests from this address (`rate.limited`); retry after `Retry-After` seconds.",
    503: "A read store, the search index or the embedding model is unavailable; retry later.",
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds until the window resets", "required": True,
                          "schema": {"type": "integer", "minimum": 1}}},
}
# Every read-model route: `?after=` (408, 409), parameters (422), the throttle (429), the stores (503).
READ_MODEL_STATUSES = (408, 409, 422, 429, 503)
# FastAPI declares a bearer dependency as required; this empty requirement makes it optional (OpenAPI:
# any one entry of `security` suffices), for routes that answer anonymous callers too.
OPTIONAL_AUTH: dict[str, Any] = {"security": [{}]}


def error_responses(*statuses: int, common: tuple[int, ...] = READ_MODEL_STATUSES) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each error status it can answer, with the real body and headers."""
    return {
        status: {"model": ErrorPublic, "description": ERROR_STATUSES[status],
                 **({"headers": ERROR_HEADERS[status]} if status in ERROR_HEADERS else {})}
        for status in sorted({*common, *statuses})
    }
