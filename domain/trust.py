"""Trust score per user: signals are recorded, and the score is recomputed from all of them.

Formula version 1 (`compute_score`), integer 0..1000, independent of signal order:
    500 base
  + reviews: (mean stars - 3) * 100 * n / (n + 5)   (between -200 and +200; few reviews weigh less)
  + completed orders: 4 per order, at most +200 (50 orders)
  + disputes: +10 per dispute won (at most +50), -40 per dispute lost
  + KYC verified: +100 (once)
  - fraud flags: -300 each
then rounded down and clamped to 0..1000. Exact rational arithmetic, so every replica agrees.
The aggregate id is derived from the user id (`trust_id_for`) with uuid5 (deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from uuid import UUID, uuid5

from domain.chain import ChainedAggregate
from domain.errors import DomainError, check_aware

FORMULA_VERSION = 1
TRUST_NAMESPACE = UUID("0b8e4c52-6d0e-5f6a-8a7b-2c9d1e3f4a5b")


class SignalKind(StrEnum):
    """What happened that bears on a user's trustworthiness."""

    REVIEW = "review"
    COMPLETED_ORDER = "completed_order"
    DISPUTE_OUTCOME = "dispute_outcome"
    FRAUD_FLAG = "fraud_flag"
    KYC_VERIFIED = "kyc_verified"


class TrustError(DomainError):
    """A trust rule was broken."""

    code = "trust.error"


class InvalidSignalError(TrustError):
    """The signal is malformed (e.g. stars outside 1..5, outcome not won/lost)."""

    code = "trust.invalid_signal"


class DuplicateSignalError(TrustError):
    """This signal (kind + reference) was already recorded."""

    code = "trust.duplicate_signal"


@dataclass(frozen=True)
class Signal:
    """One recorded signal: `stars` for reviews, `outcome` ("won"/"lost") for disputes."""

    kind: SignalKind
    ref: str
    at: datetime
    stars: int | None = None
    outcome: str | None = None


def check_signal(kind: SignalKind, stars: int | None, outcome: str | None) -> None:
    """Reviews carry 1..5 stars, dispute outcomes carry won/lost, other kinds neither."""
    if kind == SignalKind.REVIEW:
        if stars is None or isinstance(stars, bool) or not 1 <= stars <= 5 or outcome is not None:
            raise InvalidSignalError("a review needs 1..5 stars")
    elif kind == SignalKind.DISPUTE_OUTCOME:
        if outcome not in ("won", "lost") or stars is not None:
            raise InvalidSignalError("a dispute outcome is 'won' or 'lost'")
    elif stars is not None or outcome is not None:
        raise InvalidSignalError(f"a {kind} signal takes no stars and no outcome")


def compute_score(signals: Iterable[Signal]) -> int:
    """Trust score 0..1000 by formula version 1 (see module docstring)."""
    all_signals = list(signals)
    stars = [s.stars or 0 for s in all_signals if s.kind == SignalKind.REVIEW]
    orders = sum(1 for s in all_signals if s.kind == SignalKind.COMPLETED_ORDER)
    won = sum(1 for s in all_signals if s.kind == SignalKind.DISPUTE_OUTCOME and s.outcome == "won")
    lost = sum(1 for s in all_signals if s.kind == SignalKind.DISPUTE_OUTCOME and s.outcome == "lost")
    frauds = sum(1 for s in all_signals if s.kind == SignalKind.FRAUD_FLAG)
    kyc = any(s.kind == SignalKind.KYC_VERIFIED for s in all_signals)
    score = Fraction(500)
    if stars:
        n = len(stars)
        score += (Fraction(sum(stars), n) - 3) * 100 * Fraction(n, n + 5)
    score += min(orders * 4, 200) + min(won * 10, 50) - lost * 40 - frauds * 300 + (100 if kyc else 0)
    return max(0, min(1000, math.floor(score)))


class TrustScore(ChainedAggregate):
    """A user's trust score and the signals it is computed from."""

    class Event(ChainedAggregate.Event):
        """Base class of trust score events."""

    class Started(Event, ChainedAggregate.Created):
        """Trust tracking started for a user (score at the base value)."""

        user_id: UUID
        formula_version: int
        score: int

    def __init__(self, user_id: UUID, formula_version: int, score: int) -> None:
        self.user_id = user_id
        self.formula_version = formula_version
        self.score = score
        self.signals: list[Signal] = []

    @classmethod
    def start(cls, *, user_id: UUID, now: datetime) -> TrustScore:
        """Start tracking a user's trust (id: `trust_id_for(user_id)`)."""
        check_aware(now)
        return cls._create_chained(cls.Started, trust_id_for(user_id), now, user_id=user_id,
                                   formula_version=FORMULA_VERSION, score=compute_score([]))

    class SignalRecorded(Event):
        """A signal about the user was recorded; `ref` identifies its source (order, review id)."""

        kind: str
        ref: str
        at: datetime
        stars: int | None
        outcome: str | None

        def apply(self, aggregate: TrustScore) -> None:
            signal = Signal(SignalKind(self.kind), self.ref, self.at, self.stars, self.outcome)
            aggregate.signals.append(signal)

    class ScoreRecomputed(Event):
        """The score was recomputed from all signals with a given formula version."""

        score: int
        formula_version: int
        signal_count: int

        def apply(self, aggregate: TrustScore) -> None:
            aggregate.score = self.score
            aggregate.formula_version = self.formula_version

    def check_new_signal(self, kind: SignalKind, ref: str) -> None:
        """A source counts once: consumers may deliver the same fact twice."""
        if any(s.kind == kind and s.ref == ref for s in self.signals):
            raise DuplicateSignalError(kind=kind, ref=ref)

    def record_signal(self, *, kind: SignalKind | str, ref: str, at: datetime, now: datetime,
                      stars: int | None = None, outcome: str | None = None) -> None:
        """Record a signal and recompute the score (two events)."""
        check_aware(now)
        check_aware(at)
        try:
            kind = SignalKind(kind)
        except ValueError as exc:
            raise InvalidSignalError(f"unknown signal kind {kind!r}") from exc
        check_signal(kind, stars, outcome)
        self.check_new_signal(kind, ref)
        self._trigger(self.SignalRecorded, now, kind=kind.value, ref=ref, at=at, stars=stars, outcome=outcome)
        self.recompute(now=now)

    def recompute(self, *, now: datetime) -> None:
        """Recompute with the current formula (also used after a formula upgrade)."""
        check_aware(now)
        self._trigger(self.ScoreRecomputed, now, score=compute_score(self.signals),
                      formula_version=FORMULA_VERSION, signal_count=len(self.signals))


def trust_id_for(user_id: UUID) -> UUID:
    """The id of a user's trust score aggregate."""
    return uuid5(TRUST_NAMESPACE, str(user_id))
