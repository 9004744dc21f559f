"""The command HTTP API (FastAPI, /v1): each route validates, authorises, runs one handler, returns the log position."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, FastAPI, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from commands.application import Change, Idempotency, Marketplace, request_fingerprint
from commands.auth import Principal, TokenService, jwt_secret
from commands.deps import Actor, App, IdempotencyKey, IfMatch
from commands.errors import install_error_handlers
from commands.handlers import licences, listings, orders, trust, users, wallets
from infra.settings import Settings
from schemas import licence as licence_schemas
from schemas import listing as listing_schemas
from schemas import order as order_schemas
from schemas import trust as trust_schemas
from schemas import user as user_schemas
from schemas import wallet as wallet_schemas

C = TypeVar("C", bound=BaseModel)
router = APIRouter(prefix="/v1")


def body_model(command: type[BaseModel], *path_fields: str) -> type[BaseModel]:
    """The HTTP body of a command: its fields less those taken from the path (for OpenAPI and 422s)."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in command.model_fields.items() if name not in path_fields
    }
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{command.__name__}Body", __config__=ConfigDict(extra="forbid"), __doc__=command.__doc__, **fields
    )


def build(command: type[C], body: BaseModel | None, **path: Any) -> C:
    """The full command from body and path, with the command's own cross-field checks (422 on failure)."""
    data = body.model_dump(exclude_unset=True) if body is not None else {}
    return command.model_validate({**data, **path})


def execute(
    app: Marketplace,
    act: Callable[[], Change],
    *,
    principal: str,
    key: str | None,
    fingerprint: str,
    if_match: int | None = None,
    created: bool = False,
) -> JSONResponse:
    """Run a handler through the application and shape the response (201 for creations)."""
    idempotency = Idempotency(principal, key, fingerprint) if key else None
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


ACCEPTED: dict[int | str, dict[str, Any]] = {200: {"model": CommandAccepted}, 201: {"model": CommandAccepted}}

RegisterBody = body_model(user_schemas.RegisterUser)
ChangeRoleBody = body_model(user_schemas.ChangeUserRole, "user_id")
DepositBody = body_model(wallet_schemas.Deposit)
WithdrawFundsBody = body_model(wallet_schemas.WithdrawFunds)
DraftBody = body_model(listing_schemas.DraftListing)
ReviseBody = body_model(listing_schemas.ReviseListing, "listing_id")
PriceBody = body_model(listing_schemas.ChangeListingPrice, "listing_id")
EnrichBody = body_model(listing_schemas.EnrichListing, "listing_id")
SuspendBody = body_model(listing_schemas.SuspendListing, "listing_id")
PlaceOrderBody = body_model(order_schemas.PlaceOrder)
ShipBody = body_model(order_schemas.ShipOrder, "order_id")
CancelBody = body_model(order_schemas.CancelOrder, "order_id")
DisputeBody = body_model(order_schemas.OpenDispute, "order_id")
ResolveBody = body_model(order_schemas.ResolveDispute, "order_id")
IssueLicenceBody = body_model(licence_schemas.IssueLicence)
UsageBody = body_model(licence_schemas.RecordUsage, "licence_id")
RenewBody = body_model(licence_schemas.RenewLicence, "licence_id")
RevokeBody = body_model(licence_schemas.RevokeLicence, "licence_id")
SignalBody = body_model(trust_schemas.RecordTrustSignal, "user_id")


def _actor_key(actor: Principal) -> str:
    return str(actor.user_id)


# --- users and tokens -------------------------------------------------------------------------------


@router.post("/users", status_code=201, responses=ACCEPTED, tags=["users"])
def register_user(body: RegisterBody, app: App, key: IdempotencyKey) -> JSONResponse:  # type: ignore[valid-type]
    """Register a buyer or seller account (no token needed)."""
    cmd = build(user_schemas.RegisterUser, body)
    return execute(app, lambda: users.register_user(app, cmd), principal="anonymous", key=key,
                   fingerprint=fingerprint("users", cmd), created=True)


@router.post("/auth/token", response_model=TokenResponse, tags=["users"])
def issue_token(body: TokenRequest, app: App) -> TokenResponse:
    """Log in with e-mail and password; returns a bearer token (HS256 JWT)."""
    principal = users.authenticate(app, body.email, body.password)
    settings: Settings = app.settings
    token = TokenService(jwt_secret(settings), settings.jwt_ttl_s).issue(principal.user_id, principal.role)
    return TokenResponse(access_token=token, expires_in=settings.jwt_ttl_s, user_id=principal.user_id,
                         role=principal.role)


@router.post("/users/{user_id}/role", responses=ACCEPTED, tags=["users"])
def change_user_role(user_id: UUID, body: ChangeRoleBody, app: App, actor: Actor,  # type: ignore[valid-type]
                     key: IdempotencyKey) -> JSONResponse:
    """Give a user another role (admin only)."""
    cmd = build(user_schemas.ChangeUserRole, body, user_id=user_id)
    return execute(app, lambda: users.change_user_role(app, actor, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint(f"role:{user_id}", cmd))


@router.post("/users/{user_id}/forget", responses=ACCEPTED, tags=["users"])
def forget_user(user_id: UUID, app: App, actor: Actor, key: IdempotencyKey) -> JSONResponse:
    """Erase a user's personal data for good by destroying their key (the user themselves or an admin)."""
    cmd = user_schemas.ForgetUser(user_id=user_id)
    return execute(app, lambda: users.forget_user(app, actor, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint(f"forget:{user_id}", cmd))


# --- wallets -----------------------------------------------------------------------------------------


@router.post("/wallets/{user_id}/deposits", responses=ACCEPTED, tags=["wallets"])
def deposit(user_id: UUID, body: DepositBody, app: App, actor: Actor,  # type: ignore[valid-type]
            key: IdempotencyKey) -> JSONResponse:
    """Add money to a wallet (its owner or an admin); the wallet is opened on first deposit."""
    cmd = build(wallet_schemas.Deposit, body)
    return execute(app, lambda: wallets.deposit(app, actor, user_id, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint(f"deposit:{user_id}", cmd))


@router.post("/wallets/{user_id}/withdrawals", responses=ACCEPTED, tags=["wallets"])
def withdraw_funds(user_id: UUID, body: WithdrawFundsBody, app: App, actor: Actor,  # type: ignore[valid-type]
                   key: IdempotencyKey) -> JSONResponse:
    """Pay available money out of a wallet."""
    cmd = build(wallet_schemas.WithdrawFunds, body)
    return execute(app, lambda: wallets.withdraw_funds(app, actor, user_id, cmd), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"withdraw:{user_id}", cmd))


# --- listings ----------------------------------------------------------------------------------------


@router.post("/listings", status_code=201, responses=ACCEPTED, tags=["listings"])
def draft_listing(body: DraftBody, app: App, actor: Actor, key: IdempotencyKey) -> JSONResponse:  # type: ignore[valid-type]
    """Draft a listing (sellers)."""
    cmd = build(listing_schemas.DraftListing, body)
    return execute(app, lambda: listings.draft_listing(app, actor, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint("listings", cmd), created=True)


@router.patch("/listings/{listing_id}", responses=ACCEPTED, tags=["listings"])
def revise_listing(listing_id: UUID, body: ReviseBody, app: App, actor: Actor,  # type: ignore[valid-type]
                   key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Revise a listing's texts or attributes (its seller)."""
    cmd = build(listing_schemas.ReviseListing, body, listing_id=listing_id)
    return execute(app, lambda: listings.revise_listing(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"revise:{listing_id}", cmd, if_match), if_match=if_match)


@router.post("/listings/{listing_id}/price", responses=ACCEPTED, tags=["listings"])
def change_listing_price(listing_id: UUID, body: PriceBody, app: App, actor: Actor,  # type: ignore[valid-type]
                         key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Set a new price in the same currency (its seller)."""
    cmd = build(listing_schemas.ChangeListingPrice, body, listing_id=listing_id)
    return execute(app, lambda: listings.change_listing_price(app, actor, cmd, if_match),
                   principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint(f"price:{listing_id}", cmd, if_match), if_match=if_match)


@router.post("/listings/{listing_id}/publish", responses=ACCEPTED, tags=["listings"])
def publish_listing(listing_id: UUID, app: App, actor: Actor, key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Put a draft on sale (its seller)."""
    cmd = listing_schemas.PublishListing(listing_id=listing_id)
    return execute(app, lambda: listings.publish_listing(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"publish:{listing_id}", cmd, if_match), if_match=if_match)


@router.post("/listings/{listing_id}/withdraw", responses=ACCEPTED, tags=["listings"])
def withdraw_listing(listing_id: UUID, app: App, actor: Actor, key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Take a listing off sale for good (its seller)."""
    cmd = listing_schemas.WithdrawListing(listing_id=listing_id)
    return execute(app, lambda: listings.withdraw_listing(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"withdraw:{listing_id}", cmd, if_match), if_match=if_match)


@router.post("/listings/{listing_id}/enrichment", responses=ACCEPTED, tags=["listings"])
def enrich_listing(listing_id: UUID, body: EnrichBody, app: App, actor: Actor,  # type: ignore[valid-type]
                   key: IdempotencyKey) -> JSONResponse:
    """Record machine enrichment (admins and enrichment workers)."""
    cmd = build(listing_schemas.EnrichListing, body, listing_id=listing_id)
    return execute(app, lambda: listings.enrich_listing(app, actor, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint(f"enrich:{listing_id}", cmd))


@router.post("/listings/{listing_id}/suspend", responses=ACCEPTED, tags=["listings"])
def suspend_listing(listing_id: UUID, body: SuspendBody, app: App, actor: Actor,  # type: ignore[valid-type]
                    key: IdempotencyKey) -> JSONResponse:
    """Suspend a listing for fraud review (admins)."""
    cmd = build(listing_schemas.SuspendListing, body, listing_id=listing_id)
    return execute(app, lambda: listings.suspend_listing(app, actor, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint(f"suspend:{listing_id}", cmd))


# --- orders ------------------------------------------------------------------------------------------


@router.post("/orders", status_code=201, responses=ACCEPTED, tags=["orders"])
def place_order(body: PlaceOrderBody, app: App, actor: Actor, key: IdempotencyKey) -> JSONResponse:  # type: ignore[valid-type]
    """Buy a published listing; its price is held in escrow from the buyer's wallet."""
    cmd = build(order_schemas.PlaceOrder, body)
    return execute(app, lambda: orders.place_order(app, actor, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint("orders", cmd), created=True)


@router.post("/orders/{order_id}/ship", responses=ACCEPTED, tags=["orders"])
def ship_order(order_id: UUID, body: ShipBody, app: App, actor: Actor,  # type: ignore[valid-type]
               key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """The seller ships a paid order."""
    cmd = build(order_schemas.ShipOrder, body, order_id=order_id)
    return execute(app, lambda: orders.ship_order(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"ship:{order_id}", cmd, if_match), if_match=if_match)


@router.post("/orders/{order_id}/confirm-delivery", responses=ACCEPTED, tags=["orders"])
def confirm_delivery(order_id: UUID, app: App, actor: Actor, key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """The buyer confirms delivery; escrow is released to seller, platform fee and creator royalty."""
    cmd = order_schemas.ConfirmDelivery(order_id=order_id)
    return execute(app, lambda: orders.confirm_delivery(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"confirm:{order_id}", cmd, if_match), if_match=if_match)


@router.post("/orders/{order_id}/cancel", responses=ACCEPTED, tags=["orders"])
def cancel_order(order_id: UUID, body: CancelBody, app: App, actor: Actor,  # type: ignore[valid-type]
                 key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Cancel an unshipped order; the escrow is refunded."""
    cmd = build(order_schemas.CancelOrder, body, order_id=order_id)
    return execute(app, lambda: orders.cancel_order(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"cancel:{order_id}", cmd, if_match), if_match=if_match)


@router.post("/orders/{order_id}/disputes", responses=ACCEPTED, tags=["orders"])
def open_dispute(order_id: UUID, body: DisputeBody, app: App, actor: Actor,  # type: ignore[valid-type]
                 key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Dispute a paid, undelivered order (buyer or seller)."""
    cmd = build(order_schemas.OpenDispute, body, order_id=order_id)
    return execute(app, lambda: orders.open_dispute(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"dispute:{order_id}", cmd, if_match), if_match=if_match)


@router.post("/orders/{order_id}/disputes/resolve", responses=ACCEPTED, tags=["orders"])
def resolve_dispute(order_id: UUID, body: ResolveBody, app: App, actor: Actor,  # type: ignore[valid-type]
                    key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Settle a dispute by refund or release (admins)."""
    cmd = build(order_schemas.ResolveDispute, body, order_id=order_id)
    return execute(app, lambda: orders.resolve_dispute(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"resolve:{order_id}", cmd, if_match), if_match=if_match)


# --- licences and trust ------------------------------------------------------------------------------


@router.post("/licences", status_code=201, responses=ACCEPTED, tags=["licences"])
def issue_licence(body: IssueLicenceBody, app: App, actor: Actor, key: IdempotencyKey) -> JSONResponse:  # type: ignore[valid-type]
    """Issue a perpetual, time-limited or usage-metered licence for an AI listing (its seller)."""
    cmd = build(licence_schemas.IssueLicence, body)
    return execute(app, lambda: licences.issue_licence(app, actor, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint("licences", cmd), created=True)


@router.post("/licences/{licence_id}/usage", responses=ACCEPTED, tags=["licences"])
def record_usage(licence_id: UUID, body: UsageBody, app: App, actor: Actor,  # type: ignore[valid-type]
                 key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Record usage of a licence (the licensee)."""
    cmd = build(licence_schemas.RecordUsage, body, licence_id=licence_id)
    return execute(app, lambda: licences.record_usage(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"usage:{licence_id}", cmd, if_match), if_match=if_match)


@router.post("/licences/{licence_id}/renew", responses=ACCEPTED, tags=["licences"])
def renew_licence(licence_id: UUID, body: RenewBody, app: App, actor: Actor,  # type: ignore[valid-type]
                  key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Extend a licence (the listing's seller)."""
    cmd = build(licence_schemas.RenewLicence, body, licence_id=licence_id)
    return execute(app, lambda: licences.renew_licence(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"renew:{licence_id}", cmd, if_match), if_match=if_match)


@router.post("/licences/{licence_id}/revoke", responses=ACCEPTED, tags=["licences"])
def revoke_licence(licence_id: UUID, body: RevokeBody, app: App, actor: Actor,  # type: ignore[valid-type]
                   key: IdempotencyKey, if_match: IfMatch) -> JSONResponse:
    """Revoke a licence for good (the listing's seller or an admin)."""
    cmd = build(licence_schemas.RevokeLicence, body, licence_id=licence_id)
    return execute(app, lambda: licences.revoke_licence(app, actor, cmd, if_match), principal=_actor_key(actor),
                   key=key, fingerprint=fingerprint(f"revoke:{licence_id}", cmd, if_match), if_match=if_match)


@router.post("/trust/{user_id}/signals", responses=ACCEPTED, tags=["trust"])
def record_trust_signal(user_id: UUID, body: SignalBody, app: App, actor: Actor,  # type: ignore[valid-type]
                        key: IdempotencyKey) -> JSONResponse:
    """Record a trust signal about a user and recompute their score (admins)."""
    cmd = build(trust_schemas.RecordTrustSignal, body, user_id=user_id)
    return execute(app, lambda: trust.record_trust_signal(app, actor, cmd), principal=_actor_key(actor), key=key,
                   fingerprint=fingerprint(f"signal:{user_id}", cmd))


def create_app(settings: Settings, marketplace: Marketplace | None = None) -> FastAPI:
    """The command API wired to an application (a new one on PostgreSQL unless given)."""

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        owned = marketplace is None
        api.state.marketplace = marketplace or Marketplace(settings)
        api.state.tokens = TokenService(jwt_secret(settings), settings.jwt_ttl_s)
        yield
        if owned:
            api.state.marketplace.close()

    api = FastAPI(title="Bazaar command API", version="1", lifespan=lifespan,
                  description="Commands that append events. Every response carries the log position.")
    install_error_handlers(api)
    api.include_router(router)

    @api.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return api
