"""`rm_trust` by user: score, formula version and signal count (trust_id is the aggregate id)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from projections.core import Handlers, Projection, Tables
from projections.read_models._sql import Cursor, params, update_sql
from schemas.trust import TrustScoreRecomputed, TrustScoreStarted, TrustSignalRecorded

TABLE = "rm_trust"
TRUST_DDL = """
CREATE TABLE {t} (
    user_id uuid PRIMARY KEY, trust_id uuid NOT NULL UNIQUE, score int NOT NULL, formula_version int NOT NULL,
    signals int NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL, version int NOT NULL, position bigint NOT NULL
);
"""


def apply_trust_score_started(cur: Cursor, t: Tables, e: TrustScoreStarted, pos: int) -> None:
    cur.execute(
        f"INSERT INTO {t[TABLE]} (user_id, trust_id, score, formula_version, updated_at, version, position)"
        " VALUES (%(user)s, %(id)s, %(score)s, %(fv)s, %(ts)s, %(v)s, %(pos)s) ON CONFLICT DO NOTHING",
        params(e, pos, user=e.user_id, score=e.score, fv=e.formula_version),
    )


def apply_trust_signal_recorded(cur: Cursor, t: Tables, e: TrustSignalRecorded, pos: int) -> None:
    cur.execute(update_sql(t[TABLE], "trust_id", "signals = signals + 1"), params(e, pos))


def apply_trust_score_recomputed(cur: Cursor, t: Tables, e: TrustScoreRecomputed, pos: int) -> None:
    cur.execute(update_sql(t[TABLE], "trust_id", "score = %(score)s, formula_version = %(fv)s, signals = %(n)s"),
                params(e, pos, score=e.score, fv=e.formula_version, n=e.signal_count))


class TrustProjection(Projection):
    """`rm_trust` by user."""

    name: ClassVar[str] = "trust"
    tables: ClassVar[Mapping[str, str]] = {TABLE: TRUST_DDL}
    handlers: ClassVar[Handlers] = {
        TrustScoreStarted: apply_trust_score_started,
        TrustSignalRecorded: apply_trust_signal_recorded,
        TrustScoreRecomputed: apply_trust_score_recomputed,
    }
