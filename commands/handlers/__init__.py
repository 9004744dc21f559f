"""Command handlers, one per command, grouped by aggregate: load, one domain call, return a Change."""

from __future__ import annotations

from uuid import UUID

from commands.application import ForbiddenError, Marketplace
from domain.user import User
from infra.tokens import Principal, require_owner_or_admin


def require_role(actor: Principal, *roles: str) -> None:
    """Refuse callers whose role is not one of `roles` (admins may do anything)."""
    if actor.role not in roles and not actor.is_admin:
        raise ForbiddenError(f"role {actor.role} may not do this", needed=" or ".join(roles))


def require_self_or_admin(actor: Principal, user_id: object) -> None:
    """Only the user themselves, or an admin, may act on a user's own resources."""
    require_owner_or_admin(actor, user_id, message="you may only act on your own account")


def require_not_forgotten(app: Marketplace, user_id: UUID) -> None:
    """Nothing more happens to a forgotten user's aggregates (`user.forgotten`, 409)."""
    if app.exists(user_id):
        user = app.load(User, user_id)
        user.check_active()
