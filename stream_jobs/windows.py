"""Event-time windows over activity, as plain data: panes, watermarks, closing, velocity and the score.

Everything here is pure (no I/O, no clock): the trend job feeds it records in partition order and writes what it
returns to Redis in one atomic step. A 5-minute *pane* per (scope, key) is the unit of state: the 5-minute
tumbling window is one pane, the 1-hour window hopping every 5 minutes is the union of 12 consecutive panes.

Watermarks are kept per partition (the largest event time seen there minus the allowed lateness); the job's
watermark is their minimum over partitions that are not idle. An event whose pane has ended at or before its
partition's watermark, or before the job's closed watermark, is late beyond the allowance: it is dropped and
counted. Which events count therefore depends only on the order inside each partition, which Kafka fixes, so a
replay after a crash computes exactly the same windows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.activity import ActivityEvent, TrendWindow

PANE_MS = 5 * 60 * 1000
HOUR_MS = 60 * 60 * 1000
PANES_PER_HOUR = HOUR_MS // PANE_MS
WINDOW_MS = {"5m": PANE_MS, "1h": HOUR_MS}
# Trending score weights per activity kind: intent (cart, contact) counts more than a glance.
KIND_WEIGHTS: Mapping[str, float] = {"view": 1.0, "search": 1.0, "click": 2.0, "add_to_cart": 4.0,
                                     "contact_seller": 5.0}
SEP = "\x1f"  # between the parts of a pane id: category names may hold any printable character


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def pane_start(event_ms: int) -> int:
    return event_ms - event_ms % PANE_MS


@dataclass(frozen=True, order=True)
class PaneKey:
    """One 5-minute pane of one category or listing."""

    scope: str
    key: str
    start: int

    @property
    def end(self) -> int:
        return self.start + PANE_MS

    @property
    def id(self) -> str:
        return f"{self.scope}{SEP}{self.key}{SEP}{self.start}"

    @classmethod
    def parse(cls, pane_id: str) -> PaneKey:
        scope, key, start = pane_id.split(SEP)
        return cls(scope, key, int(start))


@dataclass
class Pane:
    """What a pane holds: counts per kind, the distinct actors (exact) and, for listings, their categories."""

    kinds: Counter[str] = field(default_factory=Counter)
    actors: set[str] = field(default_factory=set)
    categories: Counter[str] = field(default_factory=Counter)

    @property
    def volume(self) -> int:
        return sum(self.kinds.values())


@dataclass
class PaneDelta:
    """What one batch adds to one pane (written with HINCRBY and SADD)."""

    kinds: Counter[str] = field(default_factory=Counter)
    new_actors: set[str] = field(default_factory=set)
    categories: Counter[str] = field(default_factory=Counter)


@dataclass
class Record:
    """One decoded activity record and where it came from."""

    partition: int
    offset: int
    event: ActivityEvent


def trending_score(kinds: Mapping[str, int], unique_users: int, velocity: float) -> float:
    """Weighted volume, damped when few users make it (sqrt of unique/volume), lifted by growth (log).

    score = sum(weight[kind] * count) * sqrt(unique_users / volume) * (1 + ln(1 + max(velocity, 0)))
    """
    volume = sum(kinds.values())
    if volume == 0:
        return 0.0
    weighted = sum(KIND_WEIGHTS.get(kind, 1.0) * count for kind, count in kinds.items())
    spread = math.sqrt(unique_users / volume)
    return round(weighted * spread * (1.0 + math.log1p(max(velocity, 0.0))), 6)


def velocity_of(volume: int, previous_volume: int) -> float:
    """Change against the previous window of the same length, relative to it (a new key: its volume)."""
    return round((volume - previous_volume) / max(previous_volume, 1), 6)


def _main_category(categories: Counter[str]) -> str | None:
    if not categories:
        return None
    return min(categories.items(), key=lambda item: (-item[1], item[0]))[0]


@dataclass
class BatchResult:
    """What one batch changed: pane deltas, offsets, watermarks, late counts and closed windows."""

    deltas: dict[PaneKey, PaneDelta] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    partition_max: dict[int, int] = field(default_factory=dict)
    late_dropped: int = 0
    late_accepted: int = 0
    undecodable: int = 0
    events: int = 0
    closed: list[TrendWindow] = field(default_factory=list)
    closed_upto: int | None = None
    dropped_panes: list[PaneKey] = field(default_factory=list)
    closed_volumes: dict[str, int] = field(default_factory=dict)
    expired_volumes: list[str] = field(default_factory=list)


@dataclass
class WindowState:
    """The job's whole state; the Redis store holds the same and loads it back on start."""

    panes: dict[PaneKey, Pane] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    partition_max: dict[int, int] = field(default_factory=dict)
    closed_upto: int = -(2**62)
    # Volumes of closed windows (`window|scope|key|end`), for the next window's velocity.
    closed_volumes: dict[str, int] = field(default_factory=dict)


class WindowEngine:
    """Applies records to the state and closes windows as the watermark passes their end."""

    def __init__(self, state: WindowState, lateness_ms: int) -> None:
        self.state = state
        self.lateness_ms = lateness_ms

    def partition_watermark(self, partition: int) -> int | None:
        seen = self.state.partition_max.get(partition)
        return None if seen is None else seen - self.lateness_ms

    def ingest(self, records: Iterable[Record], result: BatchResult) -> None:
        """Count each record in its category and listing panes, or drop it as too late (counted)."""
        for record in records:
            result.offsets[record.partition] = record.offset + 1
            self.state.offsets[record.partition] = record.offset + 1
            result.events += 1
            event_ms = to_ms(record.event.occurred_at)
            watermark = self.partition_watermark(record.partition)
            start = pane_start(event_ms)
            if start + PANE_MS <= max(self.state.closed_upto, watermark if watermark is not None else -(2**62)):
                result.late_dropped += 1
                continue
            seen = self.state.partition_max.get(record.partition)
            if seen is not None and event_ms < seen:
                result.late_accepted += 1  # out of order, within the allowance
            if seen is None or event_ms > seen:
                self.state.partition_max[record.partition] = event_ms
                result.partition_max[record.partition] = event_ms
            self._count(record.event, start, result)

    def _count(self, event: ActivityEvent, start: int, result: BatchResult) -> None:
        targets: list[tuple[PaneKey, str | None]] = []
        if event.category is not None:
            targets.append((PaneKey("category", event.category, start), None))
        if event.listing_id is not None:
            targets.append((PaneKey("listing", str(event.listing_id), start), event.category))
        for key, category in targets:
            # get-then-insert, not setdefault: building a Pane (three Counters) per event costs more than the count
            pane = self.state.panes.get(key)
            if pane is None:
                pane = self.state.panes[key] = Pane()
            delta = result.deltas.get(key)
            if delta is None:
                delta = result.deltas[key] = PaneDelta()
            pane.kinds[event.kind] += 1
            delta.kinds[event.kind] += 1
            if event.actor not in pane.actors:
                pane.actors.add(event.actor)
                delta.new_actors.add(event.actor)
            if category is not None:
                pane.categories[category] += 1
                delta.categories[category] += 1

    def watermark(self, partitions: Iterable[int], idle: set[int]) -> int | None:
        """The job's watermark: the minimum over busy partitions (all idle: the maximum seen)."""
        marks = {p: self.partition_watermark(p) for p in partitions}
        busy = [mark for p, mark in marks.items() if p not in idle]
        if any(mark is None for mark in busy):
            return None  # a busy partition has not shown an event time yet
        if busy:
            return min(mark for mark in busy if mark is not None)
        known = [mark for mark in marks.values() if mark is not None]
        return max(known) if known else None

    def close(self, watermark: int | None, result: BatchResult) -> None:
        """Close every window ending at or before the watermark, oldest first; forget panes no one needs."""
        if watermark is None or watermark <= self.state.closed_upto:
            return
        first_end = self.state.closed_upto - self.state.closed_upto % PANE_MS + PANE_MS
        self.state.closed_upto = result.closed_upto = watermark
        if watermark < first_end:
            return  # no window ends in between: only the watermark moved
        by_start: dict[int, list[tuple[PaneKey, Pane]]] = {}
        for key, pane in self.state.panes.items():
            by_start.setdefault(key.start, []).append((key, pane))
        if by_start:
            last_end = min(watermark, max(by_start) + HOUR_MS)
            for end in range(max(first_end, min(by_start) + PANE_MS), last_end + 1, PANE_MS):
                result.closed.extend(self._windows_ending(end, "5m", by_start, result))
                result.closed.extend(self._windows_ending(end, "1h", by_start, result))
        for start in sorted(start for start in by_start if start + HOUR_MS <= watermark):
            for pane_key, _ in sorted(by_start[start], key=lambda item: item[0]):
                del self.state.panes[pane_key]
                result.dropped_panes.append(pane_key)
        for vol_key in sorted(self.state.closed_volumes):
            if int(vol_key.rsplit("|", 1)[1]) + HOUR_MS < watermark:
                del self.state.closed_volumes[vol_key]
                result.expired_volumes.append(vol_key)

    def _windows_ending(self, end: int, window: str, by_start: Mapping[int, list[tuple[PaneKey, Pane]]],
                        result: BatchResult) -> list[TrendWindow]:
        members: dict[tuple[str, str], list[Pane]] = {}
        for start in range(end - WINDOW_MS[window], end, PANE_MS):
            for key, pane in by_start.get(start, ()):
                members.setdefault((key.scope, key.key), []).append(pane)
        return [self._window(window, scope, name, end, panes, result)
                for (scope, name), panes in sorted(members.items())]

    def _window(self, window: str, scope: str, key: str, end: int, panes: list[Pane],
                result: BatchResult) -> TrendWindow:
        kinds: Counter[str] = Counter()
        categories: Counter[str] = Counter()
        actors: set[str] = set()
        for pane in panes:
            kinds.update(pane.kinds)
            categories.update(pane.categories)
            actors |= pane.actors
        volume = sum(kinds.values())
        length = WINDOW_MS[window]
        previous = self.state.closed_volumes.get(f"{window}|{scope}|{key}|{end - length}", 0)
        vol_key = f"{window}|{scope}|{key}|{end}"
        self.state.closed_volumes[vol_key] = volume
        result.closed_volumes[vol_key] = volume
        velocity = velocity_of(volume, previous)
        return TrendWindow(
            window=window,  # type: ignore[arg-type]
            scope=scope,  # type: ignore[arg-type]
            key=key, category=_main_category(categories) if scope == "listing" else None, revision=1,
            start=from_ms(end - length), end=from_ms(end), volume=volume, unique_users=len(actors),
            kinds=dict(sorted(kinds.items())), previous_volume=previous, velocity=velocity,
            score=trending_score(kinds, len(actors), velocity),
        )
