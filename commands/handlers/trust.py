"""Trust scores: admins (and platform jobs) record signals; the score is recomputed in the same append."""

from __future__ import annotations

from commands.application import Change, Marketplace
from commands.auth import Principal
from commands.handlers import require_role
from domain.trust import TrustScore, trust_id_for
from domain.user import User
from schemas.trust import RecordTrustSignal


def record_trust_signal(app: Marketplace, actor: Principal, cmd: RecordTrustSignal) -> Change:
    require_role(actor, "admin")
    app.load(User, cmd.user_id).check_active()  # unknown users are a 404, forgotten ones a 409
    now = app.now()
    trust_id = trust_id_for(cmd.user_id)
    score = app.load(TrustScore, trust_id) if app.exists(trust_id) else TrustScore.start(user_id=cmd.user_id, now=now)
    score.record_signal(kind=cmd.kind, ref=cmd.ref, at=cmd.at, stars=cmd.stars, outcome=cmd.outcome, now=now)
    score.recompute(now=now)
    return Change(score, body={"user_id": str(cmd.user_id), "score": score.score,
                               "formula_version": score.formula_version})
