"""Command handlers, one per command, grouped by aggregate: load, one domain call, return a Change."""

from __future__ import annotations

from commands.application import ForbiddenError
from commands.auth import Principal


def require_role(actor: Principal, *roles: str) -> None:
    """Refuse callers whose role is not one of `roles` (admins may do anything)."""
    if actor.role not in roles and not actor.is_admin:
        raise ForbiddenError(f"role {actor.role} may not do this", needed=" or ".join(roles))


def require_self_or_admin(actor: Principal, user_id: object) -> None:
    """Only the user themselves, or an admin, may act on a user's own resources."""
    if actor.user_id != user_id and not actor.is_admin:
        raise ForbiddenError("you may only act on your own account")
