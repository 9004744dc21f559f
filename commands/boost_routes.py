"""Boost commands: the seller's auto-boost switch, and BoostListing (sent by the auto-boost agent, admins)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from commands.application import Change, Idempotency, request_fingerprint
from commands.deps import Actor, App, IdempotencyKey
from commands.handlers import listings
from infra.tokens import Principal
from schemas.errors import ErrorResponse
from schemas.listing import BoostListing, SetAutoBoost

router = APIRouter(prefix="/v1", tags=["listings"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)}


class AutoBoostBody(BaseModel):
    """Turn auto-boost on or off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool


class BoostBody(BaseModel):
    """Promote the listing until a time."""

    model_config = ConfigDict(extra="forbid")

    until: AwareDatetime = Field(description="when the boost ends (in the future)")
    source: Literal["auto", "paid"] = Field(description="auto: the auto-boost agent (needs auto-boost on)")


class BoostAccepted(BaseModel):
    """An accepted boost command: the listing's new version and log position."""

    model_config = ConfigDict(extra="allow")

    aggregate_id: UUID
    version: int
    position: int
    positions: list[int]
    auto_boost: bool | None = None
    boosted_until: datetime | None = None


def _execute(app: App, actor: Principal, key: str | None, route: str, command: BaseModel,
             act: Callable[[], Change]) -> JSONResponse:
    """Run one handler; an Idempotency-Key makes it retry-safe (the agent's key is its (listing, window))."""
    idempotency = None
    if key:
        idempotency = Idempotency(str(actor.user_id), key, request_fingerprint(route, command.model_dump_json()))
    result = app.run(act, idempotency=idempotency)
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return JSONResponse(result.to_json(), headers=headers)


@router.post("/listings/{listing_id}/auto-boost", response_model=BoostAccepted, responses=ERRORS,
             operation_id="SetAutoBoost", summary="Turn auto-boost on or off (its seller)")
def set_auto_boost(actor: Actor, listing_id: UUID, body: AutoBoostBody, app: App,
                   key: IdempotencyKey) -> JSONResponse:
    """Let the auto-boost agent promote the listing when it outperforms its category, or stop it (its seller)."""
    cmd = SetAutoBoost(listing_id=listing_id, enabled=body.enabled)
    return _execute(app, actor, key, f"POST /listings/{listing_id}/auto-boost", cmd,
                    lambda: listings.set_auto_boost(app, actor, cmd))


@router.post("/listings/{listing_id}/boost", response_model=BoostAccepted, responses=ERRORS,
             operation_id="BoostListing", summary="Promote a published listing until a time (admins, agent)")
def boost_listing(actor: Actor, listing_id: UUID, body: BoostBody, app: App, key: IdempotencyKey) -> JSONResponse:
    """Promote a published listing until `until` (admins and the auto-boost agent's service token)."""
    cmd = BoostListing(listing_id=listing_id, until=body.until, source=body.source)
    return _execute(app, actor, key, f"POST /listings/{listing_id}/boost", cmd,
                    lambda: listings.boost_listing(app, actor, cmd))
