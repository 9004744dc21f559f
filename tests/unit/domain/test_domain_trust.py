"""Trust score: deterministic formula, versioned, duplicates refused."""

from __future__ import annotations

import random
from uuid import UUID

import pytest

from domain.trust import (
    FORMULA_VERSION,
    DuplicateSignalError,
    InvalidSignalError,
    Signal,
    SignalKind,
    TrustScore,
    compute_score,
    trust_id_for,
)
from tests.unit.domain.support import SELLER, T0, at


def _sig(kind: SignalKind, ref: str = "r", stars: int | None = None, outcome: str | None = None) -> Signal:
    return Signal(kind, ref, T0, stars, outcome)


def test_base_score() -> None:
    assert compute_score([]) == 500


@pytest.mark.parametrize(
    ("signals", "score"),
    [
        ([_sig(SignalKind.REVIEW, stars=5)], 533),  # 500 + 2*100*1/6 = 533.3
        ([_sig(SignalKind.REVIEW, stars=1)], 466),  # 500 - 33.3 rounded down
        ([_sig(SignalKind.KYC_VERIFIED), _sig(SignalKind.KYC_VERIFIED, "r2")], 600),
        ([_sig(SignalKind.COMPLETED_ORDER, str(i)) for i in range(80)], 700),
        ([_sig(SignalKind.DISPUTE_OUTCOME, str(i), outcome="won") for i in range(9)], 550),
        ([_sig(SignalKind.DISPUTE_OUTCOME, outcome="lost")], 460),
        ([_sig(SignalKind.FRAUD_FLAG, str(i)) for i in range(3)], 0),
    ],
)
def test_formula_v1(signals: list[Signal], score: int) -> None:
    assert compute_score(signals) == score


def test_score_is_independent_of_order_and_bounded() -> None:
    signals = (
        [_sig(SignalKind.REVIEW, str(i), stars=1 + i % 5) for i in range(40)]
        + [_sig(SignalKind.COMPLETED_ORDER, str(i)) for i in range(60)]
        + [_sig(SignalKind.KYC_VERIFIED)]
    )
    shuffled = list(signals)
    random.Random(4).shuffle(shuffled)
    assert compute_score(signals) == compute_score(shuffled)
    assert 0 <= compute_score(signals) <= 1000


def test_record_signal_recomputes_with_formula_version() -> None:
    trust = TrustScore.start(user_id=SELLER, now=T0)
    assert trust.id == trust_id_for(SELLER) and trust.score == 500
    trust.record_signal(kind="review", ref="review-1", stars=5, at=at(1), now=at(2))
    events = trust.collect_events()
    assert [type(e).__name__ for e in events] == ["Started", "SignalRecorded", "ScoreRecomputed"]
    recomputed = events[-1]
    assert isinstance(recomputed, TrustScore.ScoreRecomputed)
    assert (recomputed.score, recomputed.formula_version, recomputed.signal_count) == (
        533,
        FORMULA_VERSION,
        1,
    )
    assert trust.score == 533


def test_duplicate_signal_refused() -> None:
    trust = TrustScore.start(user_id=SELLER, now=T0)
    trust.record_signal(kind="completed_order", ref=str(UUID(int=1)), at=at(1), now=at(1))
    with pytest.raises(DuplicateSignalError) as info:
        trust.record_signal(kind="completed_order", ref=str(UUID(int=1)), at=at(1), now=at(2))
    assert info.value.code == "trust.duplicate_signal"


@pytest.mark.parametrize(
    ("kind", "stars", "outcome"),
    [
        ("review", None, None),
        ("review", 6, None),
        ("review", 0, None),
        ("dispute_outcome", None, "draw"),
        ("fraud_flag", 3, None),
        ("kyc_verified", None, "won"),
        ("gossip", None, None),
    ],
)
def test_invalid_signals(kind: str, stars: int | None, outcome: str | None) -> None:
    trust = TrustScore.start(user_id=SELLER, now=T0)
    with pytest.raises(InvalidSignalError):
        trust.record_signal(kind=kind, ref="x", stars=stars, outcome=outcome, at=at(1), now=at(1))
