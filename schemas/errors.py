"""The one error shape both HTTP APIs answer with: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """A machine-readable code, a message for people, and details (per-field reasons for a malformed request)."""

    code: str = Field(description="stable and machine-readable, e.g. order.invalid_transition")
    message: str
    details: dict[str, Any] | list[dict[str, Any]] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    """Every 4xx (and 5xx) body of both APIs."""

    error: ErrorDetail


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """A JSON error body; `code` is stable and machine-readable."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors as [{loc, msg, type}], without echoing the raw input back."""
    return [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": err.get("msg"), "type": err.get("type")}
        for err in errors
    ]
