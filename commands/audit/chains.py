"""The hash-chain check over events in log order: which event was altered, dropped, duplicated or moved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.audit.report import Problem
from domain.chain import GENESIS_HASH

_BROKEN = -1
_PENDING = "pending"


@dataclass(frozen=True)
class _Gap:
    expected: int
    seen: int
    position: int | None
    notification_id: int
    where: str | None


@dataclass(frozen=True)
class _Link:
    """A prev_hash that did not match: which event changed is known only at the next event."""

    version: int
    position: int | None
    notification_id: int
    prev_position: int | None
    prev_notification_id: int
    expected_prev: str
    hash: str
    where: str | None


class ChainChecker:
    """Checks every aggregate's chain over events given in log order; keeps the first break of each.

    `states[aggregate]` is [next version, hash of the last event, its position, its notification id];
    the next version is `_BROKEN` once the aggregate's chain has a reported break.
    """

    def __init__(self) -> None:
        self.states: dict[str, list[Any]] = {}
        self.problems: list[Problem] = []
        self._gaps: dict[str, _Gap] = {}
        self._links: dict[str, _Link] = {}

    def check(
        self, position: int | None, nid: int, agg: str, version: int, prev: str, digest: str,
        where: str | None = None,
    ) -> None:
        """Check one event against its aggregate's chain so far."""
        state = self.states.get(agg)
        if state is not None and state[0] == version and state[1] == prev:
            state[0], state[1], state[2], state[3] = version + 1, digest, position, nid
        elif state is None and version == 1 and prev == GENESIS_HASH:
            self.states[agg] = [2, digest, position, nid]
        else:
            self.anomaly(state, position, nid, agg, version, prev, digest, where)

    def unreadable(self, position: int | None, nid: int, agg: str, version: int, detail: str,
                   where: str | None = None) -> None:
        """An event that does not decode: it was altered, and its aggregate's chain stops here."""
        self.problems.append(Problem("altered", detail, agg, version, position, nid, where=where))
        state = self.states.setdefault(agg, [1, GENESIS_HASH, position, nid])
        self._break(state, position, nid)

    def anomaly(
        self, state: list[Any] | None, position: int | None, nid: int, agg: str, version: int,
        prev: str, digest: str, where: str | None = None,
    ) -> None:
        """Everything but the next event of a sound chain."""
        if state is None:
            state = self.states[agg] = [1, GENESIS_HASH, None, 0]
        link = self._links.pop(agg, None)
        if link is not None:
            self._resolve_link(agg, link, version, prev)
            self._break(state, position, nid)
            return
        if state[0] == _BROKEN:
            self._watch_gap(agg, version, position, nid, where)
            state[2], state[3] = position, nid
            return
        expected = state[0]
        if version == expected:
            self._links[agg] = _Link(version, position, nid, state[2], state[3], state[1], digest, where)
            state[0], state[1], state[2], state[3] = version + 1, _PENDING, position, nid
            return
        if version > expected:
            self._gaps[agg] = _Gap(expected, version, position, nid, where)
        else:
            detail = f"version {version} appears again after version {expected - 1}"
            self.problems.append(Problem("duplicated", detail, agg, version, position, nid, where=where))
        self._break(state, position, nid)

    def _break(self, state: list[Any], position: int | None, nid: int) -> None:
        state[0], state[1], state[2], state[3] = _BROKEN, _PENDING, position, nid

    def _watch_gap(self, agg: str, version: int, position: int | None, nid: int, where: str | None) -> None:
        gap = self._gaps.get(agg)
        if gap is not None and version == gap.expected:
            del self._gaps[agg]
            detail = (
                f"version {gap.seen} comes before version {gap.expected} in the log "
                f"(version {gap.expected} is at notification {nid})"
            )
            self.problems.append(
                Problem("reordered", detail, agg, gap.expected, gap.position, gap.notification_id,
                        where=gap.where)
            )

    def _resolve_link(self, agg: str, link: _Link, version: int | None, prev: str | None) -> None:
        k = link.version
        if version == k + 1 and prev == link.expected_prev:
            detail = f"versions {k} and {k + 1} hold each other's events (version {k + 1} links to {k - 1})"
            self.problems.append(
                Problem("reordered", detail, agg, k, link.position, link.notification_id, where=link.where)
            )
            return
        if version == k + 1 and prev != link.hash:
            # Both links around k are broken: k itself (its prev_hash or content) was changed.
            detail = f"its hash and its prev_hash both disagree with the chain (versions {k - 1} and {k + 1})"
            self.problems.append(
                Problem("altered", detail, agg, k, link.position, link.notification_id, where=link.where)
            )
            return
        self.problems.append(self._predecessor_altered(agg, link, certain=version == k + 1))

    def _predecessor_altered(self, agg: str, link: _Link, *, certain: bool) -> Problem:
        k = link.version
        if k == 1:
            return Problem("altered", "the first event's prev_hash is not the genesis hash", agg, 1,
                           link.position, link.notification_id, where=link.where)
        detail = f"its hash no longer matches the prev_hash recorded by version {k}"
        if not certain:
            detail += f" (or version {k}'s own prev_hash was changed: nothing follows it)"
        return Problem("altered", detail, agg, k - 1, link.prev_position, link.prev_notification_id,
                       where=link.where)

    def finish(self) -> list[Problem]:
        """Resolve what only the end of the log decides; the problems found, in log order."""
        for agg, link in self._links.items():
            self.problems.append(self._predecessor_altered(agg, link, certain=False))
        self._links.clear()
        for agg, gap in self._gaps.items():
            detail = f"version {gap.expected} is absent (version {gap.seen} follows version {gap.expected - 1})"
            self.problems.append(
                Problem("missing", detail, agg, gap.expected, gap.position, gap.notification_id,
                        where=gap.where)
            )
        self._gaps.clear()
        self.problems.sort(key=Problem.sort_key)
        return self.problems

    def last_events_between(self, low: int, high: int) -> list[tuple[str, int, int, int]]:
        """(aggregate, version, position, notification id) of sound chains whose last event is in [low, high)."""
        found = []
        for agg, (next_version, _, position, nid) in self.states.items():
            if next_version != _BROKEN and position is not None and low <= position < high:
                found.append((agg, next_version - 1, position, nid))
        return sorted(found, key=lambda item: item[2])
