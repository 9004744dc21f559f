"""A user's public trust score (rm_trust)."""

from __future__ import annotations

from uuid import UUID

from read_api.models import TrustPublic
from read_api.queries.rows import Conn, fetch_one

SQL = "SELECT user_id, score, formula_version, signals, updated_at FROM rm_trust WHERE user_id = %s"


def trust_score(conn: Conn, user_id: UUID) -> TrustPublic | None:
    """The score, or None when the user has none projected."""
    row = fetch_one(conn, SQL, (user_id,))
    return None if row is None else TrustPublic.model_validate(row)
