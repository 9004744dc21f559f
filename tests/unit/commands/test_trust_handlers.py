"""The trust signal handler on the in-memory store: signals recorded and the score recomputed in one append."""

from __future__ import annotations

from uuid import UUID, uuid4

from commands.handlers import trust, users
from domain.errors import NotFoundError
from domain.trust import FORMULA_VERSION, DuplicateSignalError, TrustScore, compute_score, trust_id_for
from domain.user import UserForgottenError
from schemas.trust import RecordTrustSignal
from schemas.user import ForgetUser
from tests.unit.commands.support import T0, World


def signal(user_id: UUID, ref: str = "order-1", kind: str = "completed_order", **extra: object) -> RecordTrustSignal:
    return RecordTrustSignal.model_validate({"user_id": user_id, "kind": kind, "ref": ref, "at": T0, **extra})


def test_first_signal_starts_the_score_and_recomputes_it(world: World) -> None:
    user_id = world.register()
    result = world.run(lambda: trust.record_trust_signal(world.app, world.admin, signal(user_id)))
    score = world.get(TrustScore, trust_id_for(user_id))
    assert result.aggregate_id == trust_id_for(user_id)
    assert result.body == {"user_id": str(user_id), "score": compute_score(score.signals),
                           "formula_version": FORMULA_VERSION}
    assert [s.ref for s in score.signals] == ["order-1"]


def test_later_signals_extend_the_same_score(world: World) -> None:
    user_id = world.register()
    world.run(lambda: trust.record_trust_signal(world.app, world.admin, signal(user_id)))
    first = world.get(TrustScore, trust_id_for(user_id)).score
    review = signal(user_id, ref="review-9", kind="review", stars=1)
    result = world.run(lambda: trust.record_trust_signal(world.app, world.admin, review))
    score = world.get(TrustScore, trust_id_for(user_id))
    assert len(score.signals) == 2 and result.body["score"] == score.score != first


def test_the_same_source_counts_once(world: World) -> None:
    user_id = world.register()
    world.run(lambda: trust.record_trust_signal(world.app, world.admin, signal(user_id)))
    error = world.refuses(DuplicateSignalError,
                          lambda: trust.record_trust_signal(world.app, world.admin, signal(user_id)))
    assert error.code == "trust.duplicate_signal"


def test_record_trust_signal_is_refused_to_non_admins(world: World) -> None:
    user_id = world.register()
    world.forbidden(lambda: trust.record_trust_signal(world.app, world.seller, signal(user_id)))


def test_a_signal_about_an_unknown_user_is_not_found(world: World) -> None:
    world.refuses(NotFoundError, lambda: trust.record_trust_signal(world.app, world.admin, signal(uuid4())))


def test_a_signal_about_a_forgotten_user_is_refused(world: World) -> None:
    user_id = world.register()
    world.run(lambda: users.forget_user(world.app, world.admin, ForgetUser(user_id=user_id)))
    error = world.refuses(UserForgottenError,
                          lambda: trust.record_trust_signal(world.app, world.admin, signal(user_id)))
    assert error.code == "user.forgotten"
