"""Read-only HTTP for auditors on the command API: the public key, signed tree heads and proofs.

Proofs are read from the relay's stored tree exactly as `bazaar audit prove` / `consistency` read them
(O(log n) nodes per proof); an auditor checks them offline with `bazaar audit check-proof` and the public
key alone, and `bazaar audit witness` keeps the heads served here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from commands.application import ForbiddenError
from commands.audit.headcheck import read_heads
from commands.audit.keys import public_key
from commands.audit.prove import ProveError, consistency_proof, head_document, inclusion_proof
from commands.audit.signing import key_id, public_key_to_b64
from commands.audit.source import LogSource
from commands.auth import Principal
from commands.deps import App, get_principal
from commands.store import EVENTS_TABLE
from schemas.errors import ErrorResponse, error_body

router = APIRouter(prefix="/v1/audit", tags=["audit"])

# Every status the auditor routes answer besides 200, in the real error shape: 401 no or a bad token,
# 403 not an auditor or admin, 422 a malformed query; the proofs also 404 when no signed head covers them.
_AUDITOR_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (401, 403, 422)}
_PROOF_ERRORS: dict[int | str, dict[str, Any]] = {**_AUDITOR_ERRORS, 404: {"model": ErrorResponse}}


async def auditor(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """Auditors and admins only."""
    if principal.role not in ("auditor", "admin"):
        raise ForbiddenError("only auditors and admins read the audit trail", needed="auditor")
    return principal


Auditor = Annotated[Principal, Depends(auditor)]


def log_source(app: App) -> LogSource:
    """The log the application writes: its recorder's schema and events table."""
    recorder: Any = app.recorder
    schema = getattr(getattr(recorder, "datastore", None), "schema", "") or "public"
    return LogSource(app.settings, schema, getattr(recorder, "events_table_name", EVENTS_TABLE))


Source = Annotated[LogSource, Depends(log_source)]


def _unavailable(error: ProveError) -> JSONResponse:
    return JSONResponse(error_body("audit.proof_unavailable", str(error)), status_code=404)


@router.get("/public-key")
def get_public_key(app: App) -> dict[str, str]:
    """The Ed25519 key every tree head is signed with (raw, base64): all an auditor needs to trust."""
    key = public_key(app.settings)
    return {"key_id": key_id(key), "public_key": public_key_to_b64(key)}


@router.get("/heads", responses=_AUDITOR_ERRORS)
async def list_heads(source: Source, _: Auditor, limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
    """The latest signed tree heads, newest first."""
    heads = await run_in_threadpool(read_heads, source)
    return [head_document(head) for head in reversed(heads) if head.signed is not None][:limit]


@router.get("/proofs/inclusion/{event}", response_model=None, responses=_PROOF_ERRORS)
async def prove_inclusion(
    event: str, source: Source, _: Auditor, head_size: int | None = Query(None, ge=1)
) -> dict[str, Any] | JSONResponse:
    """Inclusion proof of one event (notification id, or AGGREGATE_ID:VERSION) under a signed head."""
    try:
        return await run_in_threadpool(inclusion_proof, source, event, head_size=head_size)
    except ProveError as error:
        return _unavailable(error)


@router.get("/proofs/consistency", response_model=None, responses=_PROOF_ERRORS)
async def prove_consistency(
    source: Source, _: Auditor, old: int = Query(ge=1), new: int = Query(ge=1)
) -> dict[str, Any] | JSONResponse:
    """Proof that the log at size `old` is a prefix of the log at size `new`."""
    try:
        return await run_in_threadpool(consistency_proof, source, old, new)
    except ProveError as error:
        return _unavailable(error)
