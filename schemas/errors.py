"""The one error shape both HTTP APIs answer with: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """A JSON error body; `code` is stable and machine-readable."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors as [{loc, msg, type}], without echoing the raw input back."""
    return [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": err.get("msg"), "type": err.get("type")}
        for err in errors
    ]
