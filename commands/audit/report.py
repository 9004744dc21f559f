"""What `audit verify` reports: problems located by aggregate, version and position, and the summary."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ProblemKind = Literal[
    "altered", "missing", "duplicated", "reordered", "bad-signature", "root-mismatch", "head-mismatch",
    "unsigned-tail", "kafka-mismatch",
]


@dataclass(frozen=True)
class Problem:
    """One thing that does not hold, located as precisely as the evidence allows."""

    kind: ProblemKind
    detail: str
    aggregate_id: str | None = None
    version: int | None = None
    position: int | None = None
    """0-based place in notification order (the Merkle leaf index); None where unknown (Kafka)."""
    notification_id: int | None = None
    head_size: int | None = None
    where: str | None = None
    """Where it was read, for Kafka: topic[partition]@offset."""

    def describe(self) -> str:
        """One line for people: kind, then what and where."""
        parts: list[str] = [self.kind]
        if self.aggregate_id is not None:
            parts.append(f"aggregate {self.aggregate_id} version {self.version}")
        if self.position is not None:
            parts.append(f"position {self.position}")
        if self.notification_id is not None:
            parts.append(f"notification {self.notification_id}")
        if self.head_size is not None:
            parts.append(f"head size {self.head_size}")
        if self.where:
            parts.append(self.where)
        return f"{' · '.join(parts)}: {self.detail}"

    def sort_key(self) -> tuple[int, int, int]:
        """Event problems in log order first, then heads by size."""
        if self.head_size is not None and self.aggregate_id is None:
            return (1, self.head_size, 0)
        order = self.notification_id if self.notification_id is not None else self.position or 0
        return (0, order, self.version or 0)


@dataclass
class VerifyReport:
    """What `audit verify` found."""

    source: Literal["store", "kafka"]
    events: int = 0
    aggregates: int = 0
    heads: int = 0
    latest_head_size: int = 0
    problems: list[Problem] = field(default_factory=list)
    unverifiable: int = 0
    """Kafka: events whose schema redacts a field, so that only the store can rehash them."""
    duplicates_skipped: int = 0
    """Kafka: exact re-sends of an event (same aggregate, version and hash) left out."""
    fallbacks: int = 0
    seconds: float = 0.0
    key_id: str = ""
    trusted_heads: int = 0
    """Heads the auditor kept and gave with --trusted-heads."""
    unsigned_tail_accepted: bool = False
    """--allow-unsigned-tail: events under no signed head were not held against the log."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def unsigned_tail(self) -> int:
        """Events after the latest signed head: protected by their chains only, for now."""
        return max(0, self.events - self.latest_head_size)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ok"] = self.ok
        doc["first_problem"] = asdict(self.first) if self.first else None
        doc["events_per_second"] = round(self.rate, 1)
        return doc


def unique_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in report order, each event's finding once (Kafka may see one change twice)."""
    seen: set[tuple[Any, ...]] = set()
    unique = []
    for problem in sorted(problems, key=Problem.sort_key):
        key = (problem.kind, problem.aggregate_id, problem.version) if problem.aggregate_id else (id(problem),)
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return unique
