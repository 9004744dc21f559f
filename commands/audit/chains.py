"""The auditors' use of the domain's one chain check (`domain.chain.ChainChecker`): its breaks as problems."""

from __future__ import annotations

from collections.abc import Iterable

from commands.audit.report import Problem
from domain.chain import LocatedBreak


def as_problems(found: Iterable[LocatedBreak]) -> list[Problem]:
    """Chain breaks as verify reports them."""
    return [
        Problem(b.reason, b.detail, str(b.aggregate_id), b.version, b.position, b.notification_id, where=b.where)
        for b in found
    ]
