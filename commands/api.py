"""The command HTTP API (FastAPI, /v1): each route validates, authorises, runs one handler, returns the log position."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, FastAPI, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from commands.application import Change, Idempotency, Marketplace, request_fingerprint
from commands.audit.http import router as audit_router
from commands.boost_routes import router as boost_router
from commands.deps import Actor, App, IdempotencyKey, IfMatch
from commands.errors import install_error_handlers
from commands.handlers import licences, listings, orders, trust, users, wallets
from infra.settings import Settings
from infra.tokens import Principal, TokenService, TokenVerifier, jwt_secret
from schemas import licence as licence_schemas
from schemas import listing as listing_schemas
from schemas import order as order_schemas
from schemas import trust as trust_schemas
from schemas import user as user_schemas
from schemas import wallet as wallet_schemas
from schemas.errors import ErrorResponse

C = TypeVar("C", bound=BaseModel)
router = APIRouter(prefix="/v1")


def body_model(command: type[BaseModel], *path_fields: str) -> type[BaseModel]:
    """The HTTP body of a command: its fields less those taken from the path (for OpenAPI and 422s)."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in command.model_fields.items() if name not in path_fields
    }
    # The command's cross-field rules (schemas.rules) go with it: they name body fields only.
    config = ConfigDict(extra="forbid", json_schema_extra=command.model_config.get("json_schema_extra"))
    model: type[BaseModel] = create_model(f"{command.__name__}Body", __config__=config, __doc__=command.__doc__,
                                          **fields)
    return model


def build(command: type[C], body: BaseModel | None, **path: Any) -> C:
    """The full command from body and path, with the command's own cross-field checks (422 on failure)."""
    data = body.model_dump(exclude_unset=True) if body is not None else {}
    return command.model_validate({**data, **path})


def execute(
    app: Marketplace,
    act: Callable[[], Change],
    *,
    idempotency: Idempotency | None,
    if_match: int | None = None,
    created: bool = False,
) -> JSONResponse:
    """Run a handler through the application and shape the response (201 for creations)."""
    result = app.run(act, idempotency=idempotency, if_match=if_match)
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return JSONResponse(result.to_json(), status_code=code, headers=headers)


def fingerprint(route: str, command: BaseModel, if_match: int | None = None) -> str:
    return request_fingerprint(route, command.model_dump_json(), str(if_match))


class CommandAccepted(BaseModel):
    """An accepted command: the aggregate, its new version and the event log position(s) it reached."""

    model_config = ConfigDict(extra="allow")

    aggregate_id: UUID
    version: int
    position: int = Field(description="log position of the command's last event; use as ?after= on reads")
    positions: list[int]


class TokenRequest(BaseModel):
    """E-mail and password."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    """A bearer token for the Authorization header."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user_id: UUID
    role: str


class TokensRevoked(BaseModel):
    """Every token issued to the user before now is refused from now on, by both APIs."""

    user_id: UUID
    token_generation: int = Field(description="the user's new token generation (tokens carry it as `gen`)")


def responses(success: int, model: type[BaseModel], *errors: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the success status and every error status a route can answer, in the real shape."""
    declared: dict[int | str, dict[str, Any]] = {success: {"model": model}}
    declared.update({status: {"model": ErrorResponse} for status in errors})
    return declared


# 401 no or a bad token, 403 not yours, 404 unknown aggregate, 409 its state refuses, 422 malformed request.
AUTHENTICATED_ERRORS = (401, 403, 404, 409, 422)
PUBLIC_ERRORS = (409, 422)
# A handler adapted to one calling convention: (app, actor, command, path ids, If-Match) -> Change.
Act = Callable[[Marketplace, Principal, Any, dict[str, UUID], int | None], Change]


@dataclass(frozen=True)
class CommandRoute:
    """One command endpoint: where it lives, its command schema, and how to call its handler."""

    method: str
    path: str
    command: type[BaseModel]
    act: Act
    summary: str
    tag: str
    pinnable: bool = False  # accepts If-Match
    created: bool = False  # answers 201
    public: bool = False  # no token needed

    @property
    def path_ids(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


def _pinned(handler: Callable[..., Change]) -> Act:
    return lambda app, actor, cmd, ids, if_match: handler(app, actor, cmd, if_match)


def _plain(handler: Callable[..., Change]) -> Act:
    return lambda app, actor, cmd, ids, if_match: handler(app, actor, cmd)


def _for_user(handler: Callable[..., Change]) -> Act:
    return lambda app, actor, cmd, ids, if_match: handler(app, actor, ids["user_id"], cmd)


S_USER, S_WALLET, S_LISTING, S_ORDER = user_schemas, wallet_schemas, listing_schemas, order_schemas
ROUTES = [
    CommandRoute("POST", "/users", S_USER.RegisterUser, lambda app, actor, cmd, ids, m: users.register_user(app, cmd),
                 "Register a buyer or seller account (no token needed).", "users", created=True, public=True),
    CommandRoute("POST", "/users/{user_id}/role", S_USER.ChangeUserRole, _plain(users.change_user_role),
                 "Give a user another role (admin only).", "users"),
    CommandRoute("POST", "/users/{user_id}/forget", S_USER.ForgetUser, _plain(users.forget_user),
                 "Erase a user's personal data for good by destroying their key (the user or an admin).", "users"),
    CommandRoute("POST", "/wallets/{user_id}/deposits", S_WALLET.Deposit, _for_user(wallets.deposit),
                 "Add money to a wallet (its owner or an admin); the wallet opens on first deposit.", "wallets"),
    CommandRoute("POST", "/wallets/{user_id}/withdrawals", S_WALLET.WithdrawFunds, _for_user(wallets.withdraw_funds),
                 "Pay available money out of a wallet (its owner or an admin).", "wallets"),
    CommandRoute("POST", "/listings", S_LISTING.DraftListing, _plain(listings.draft_listing),
                 "Draft a listing (sellers).", "listings", created=True),
    CommandRoute("PATCH", "/listings/{listing_id}", S_LISTING.ReviseListing, _pinned(listings.revise_listing),
                 "Revise a listing's texts or attributes (its seller).", "listings", pinnable=True),
    CommandRoute("POST", "/listings/{listing_id}/price", S_LISTING.ChangeListingPrice,
                 _pinned(listings.change_listing_price), "Set a new price in the same currency (its seller).",
                 "listings", pinnable=True),
    CommandRoute("POST", "/listings/{listing_id}/publish", S_LISTING.PublishListing,
                 _pinned(listings.publish_listing), "Put a draft on sale (its seller).", "listings", pinnable=True),
    CommandRoute("POST", "/listings/{listing_id}/withdraw", S_LISTING.WithdrawListing,
                 _pinned(listings.withdraw_listing), "Take a listing off sale for good (its seller).", "listings",
                 pinnable=True),
    CommandRoute("POST", "/listings/{listing_id}/enrichment", S_LISTING.EnrichListing, _plain(listings.enrich_listing),
                 "Record machine enrichment (admins and enrichment workers).", "listings"),
    CommandRoute("POST", "/listings/{listing_id}/suspend", S_LISTING.SuspendListing, _plain(listings.suspend_listing),
                 "Suspend a listing for fraud review (admins).", "listings"),
    CommandRoute("POST", "/orders", S_ORDER.PlaceOrder, _plain(orders.place_order),
                 "Buy a published listing; its price is held in escrow from the buyer's wallet.", "orders",
                 created=True),
    CommandRoute("POST", "/orders/{order_id}/ship", S_ORDER.ShipOrder, _pinned(orders.ship_order),
                 "The seller ships a paid order.", "orders", pinnable=True),
    CommandRoute("POST", "/orders/{order_id}/confirm-delivery", S_ORDER.ConfirmDelivery,
                 _pinned(orders.confirm_delivery),
                 "The buyer confirms delivery; escrow is released to seller, platform fee and creator royalty.",
                 "orders", pinnable=True),
    CommandRoute("POST", "/orders/{order_id}/cancel", S_ORDER.CancelOrder, _pinned(orders.cancel_order),
                 "Cancel an unshipped order; the escrow is refunded.", "orders", pinnable=True),
    CommandRoute("POST", "/orders/{order_id}/disputes", S_ORDER.OpenDispute, _pinned(orders.open_dispute),
                 "Dispute a paid, undelivered order (buyer or seller).", "orders", pinnable=True),
    CommandRoute("POST", "/orders/{order_id}/disputes/resolve", S_ORDER.ResolveDispute,
                 _pinned(orders.resolve_dispute), "Settle a dispute by refund or release (admins).", "orders",
                 pinnable=True),
    CommandRoute("POST", "/licences", licence_schemas.IssueLicence, _plain(licences.issue_licence),
                 "Issue a perpetual, time-limited or usage-metered licence for a listing (its seller).", "licences",
                 created=True),
    CommandRoute("POST", "/licences/{licence_id}/usage", licence_schemas.RecordUsage, _pinned(licences.record_usage),
                 "Record usage of a licence (the licensee).", "licences", pinnable=True),
    CommandRoute("POST", "/licences/{licence_id}/renew", licence_schemas.RenewLicence, _pinned(licences.renew_licence),
                 "Extend a licence (the listing's seller).", "licences", pinnable=True),
    CommandRoute("POST", "/licences/{licence_id}/revoke", licence_schemas.RevokeLicence,
                 _pinned(licences.revoke_licence), "Revoke a licence for good (the listing's seller or an admin).",
                 "licences", pinnable=True),
    CommandRoute("POST", "/trust/{user_id}/signals", trust_schemas.RecordTrustSignal,
                 _plain(trust.record_trust_signal), "Record a trust signal and recompute the score (admins).", "trust"),
]


def _endpoint(route: CommandRoute) -> Callable[..., JSONResponse]:
    """A FastAPI endpoint for one route, with a signature FastAPI reads for OpenAPI and validation."""
    body_cls = body_model(route.command, *route.path_ids)

    def endpoint(app: Marketplace, key: str | None, actor: Principal | None = None, if_match: int | None = None,
                 body: BaseModel | None = None, **ids: UUID) -> JSONResponse:
        own_ids = {name: value for name, value in ids.items() if name in route.command.model_fields}
        cmd = build(route.command, body, **own_ids)
        caller = actor or Principal(UUID(int=0), "anonymous")
        # The request is fingerprinted only when a key asks for retry safety (it is on the hot path).
        idempotency = None
        if key:
            principal = str(actor.user_id) if actor else "anonymous"
            idempotency = Idempotency(principal, key, fingerprint(f"{route.method} {route.path} {ids}", cmd, if_match))
        return execute(app, lambda: route.act(app, caller, cmd, ids, if_match), idempotency=idempotency,
                       if_match=if_match, created=route.created)

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter(name, kw, annotation=UUID) for name in route.path_ids]
    params.append(inspect.Parameter("app", kw, annotation=App))
    if not route.public:  # first: a request without a token is a 401 whatever its headers and body
        params.append(inspect.Parameter("actor", kw, annotation=Actor))
    params.append(inspect.Parameter("key", kw, annotation=IdempotencyKey))
    if route.pinnable:
        params.append(inspect.Parameter("if_match", kw, annotation=IfMatch))
    if body_cls.model_fields:
        params.append(inspect.Parameter("body", kw, annotation=body_cls))
    endpoint.__signature__ = inspect.Signature(params, return_annotation=JSONResponse)  # type: ignore[attr-defined]
    endpoint.__doc__ = route.summary
    endpoint.__name__ = route.command.__name__
    return endpoint


for _route in ROUTES:
    _status = 201 if _route.created else 200
    _errors = PUBLIC_ERRORS if _route.public else AUTHENTICATED_ERRORS
    router.add_api_route(_route.path, _endpoint(_route), methods=[_route.method],
                         responses=responses(_status, CommandAccepted, *_errors), status_code=_status,
                         tags=[_route.tag], summary=_route.summary.split(";")[0].rstrip("."),
                         operation_id=_route.command.__name__)


@router.post("/auth/token", response_model=TokenResponse, tags=["users"],
             responses=responses(200, TokenResponse, 401, 422))
def issue_token(body: TokenRequest, app: App, request: Request) -> TokenResponse:
    """Log in with e-mail and password; returns a bearer token (HS256 JWT) under the user's token generation."""
    principal = users.authenticate(app, body.email, body.password)
    tokens: TokenVerifier = request.app.state.tokens
    settings: Settings = app.settings
    return TokenResponse(access_token=tokens.issue(principal.user_id, principal.role), expires_in=settings.jwt_ttl_s,
                         user_id=principal.user_id, role=principal.role)


@router.post("/users/{user_id}/revoke-tokens", response_model=TokensRevoked, tags=["users"],
             responses=responses(200, TokensRevoked, 401, 403, 404, 422), operation_id="RevokeTokens")
def revoke_tokens(actor: Actor, user_id: UUID, app: App) -> TokensRevoked:
    """Refuse every token issued to the user so far, on both APIs (the user or an admin)."""
    return TokensRevoked(user_id=user_id, token_generation=users.revoke_tokens(app, actor, user_id))


def create_app(settings: Settings, marketplace: Marketplace | None = None) -> FastAPI:
    """The command API wired to an application (a new one on PostgreSQL unless given)."""

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        owned = marketplace is None
        api.state.marketplace = marketplace or Marketplace(settings)
        tokens = TokenService(jwt_secret(settings), settings.jwt_ttl_s)
        api.state.tokens = TokenVerifier(tokens, api.state.marketplace.token_generations)
        yield
        if owned:
            api.state.marketplace.close()

    api = FastAPI(title="Bazaar command API", version="1", lifespan=lifespan,
                  description="Commands that append events. Every response carries the log position.")
    install_error_handlers(api)
    api.include_router(router)
    api.include_router(audit_router)
    api.include_router(boost_router)

    @api.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return api
