"""The pure window engine: pane counts, lateness, watermarks, hopping windows, velocity and the score."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.activity import ActivityEvent
from stream_jobs.windows import (
    PANE_MS,
    BatchResult,
    Record,
    WindowEngine,
    WindowState,
    to_ms,
    trending_score,
    velocity_of,
)

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
CAMERA, LAMP = uuid.uuid4(), uuid.uuid4()
LATENESS_MS = 30_000


def event(minute: float, actor: str = "user:a", kind: str = "view", listing: uuid.UUID | None = CAMERA,
          category: str | None = "cameras") -> ActivityEvent:
    moment = T0 + timedelta(minutes=minute)
    return ActivityEvent(event_id=uuid.uuid4(), kind=kind, actor=actor, listing_id=listing,  # type: ignore[arg-type]
                         category=category, occurred_at=moment, received_at=moment)


class Feed:
    """Records into an engine, one partition or several, with offsets counted per partition."""

    def __init__(self, lateness_ms: int = LATENESS_MS) -> None:
        self.engine = WindowEngine(WindowState(), lateness_ms)
        self.offsets: dict[int, int] = {}

    def send(self, *events: ActivityEvent, partition: int = 0, partitions: tuple[int, ...] = (0,)) -> BatchResult:
        result = BatchResult()
        records = []
        for e in events:
            offset = self.offsets.get(partition, 0)
            self.offsets[partition] = offset + 1
            records.append(Record(partition, offset, e))
        self.engine.ingest(records, result)
        self.engine.close(self.engine.watermark(partitions, idle=set()), result)
        return result


def closed(result: BatchResult, window: str, scope: str) -> dict[str, tuple[int, int, float]]:
    return {w.key: (w.volume, w.unique_users, w.velocity) for w in result.closed
            if w.window == window and w.scope == scope}


def test_a_five_minute_window_closes_when_the_watermark_passes_its_end_plus_lateness() -> None:
    feed = Feed()
    feed.send(event(1, "user:a"), event(2, "user:b"), event(3, "user:a", kind="add_to_cart"))
    early = feed.send(event(5.4, "user:c"))  # watermark 5:24 - 0:30 = 4:54: the 10:00 window stays open
    assert early.closed == []
    result = feed.send(event(5.6, "user:c"))  # watermark 5:06: it closes
    assert closed(result, "5m", "category") == {"cameras": (3, 2, 3.0)}
    window = next(w for w in result.closed if w.window == "5m" and w.scope == "listing")
    assert window.kinds == {"add_to_cart": 1, "view": 2}
    assert window.category == "cameras"
    assert window.start == T0 and window.end == T0 + timedelta(minutes=5)


def test_an_out_of_order_event_within_the_allowance_counts_and_beyond_it_is_dropped_and_counted() -> None:
    feed = Feed()
    feed.send(event(4.0))
    within = feed.send(event(5.2), event(4.9, "user:late"))  # 4:54 watermark: 4:54 < 5:00, still open
    assert within.late_accepted == 1 and within.late_dropped == 0
    feed.send(event(6.0))  # watermark 5:30: 10:00-10:05 closes
    beyond = feed.send(event(4.95, "user:too-late"))
    assert beyond.late_dropped == 1
    assert beyond.offsets == {0: 5}  # a dropped event still advances the offset (next to read: 5)


def test_the_hour_window_hops_every_five_minutes_and_velocity_compares_with_the_hour_before() -> None:
    feed = Feed(lateness_ms=0)
    feed.send(*(event(m, f"user:{m}") for m in range(0, 60, 10)))  # 6 events in 10:00-11:00
    result = feed.send(*(event(60 + m, f"user:{m}") for m in range(0, 60, 5)),  # 12 in 11:00-12:00
                       event(125))
    hours = {w.end: w for w in result.closed if w.window == "1h" and w.scope == "category"}
    first = hours[T0 + timedelta(hours=1)]
    second = hours[T0 + timedelta(hours=2)]
    assert (first.volume, first.previous_volume) == (6, 0)
    assert (second.volume, second.previous_volume, second.velocity) == (12, 6, 1.0)
    assert second.unique_users == 12
    # The first batch closed the hops ending by 10:50 already; this one every 5 minutes from 10:55 to 12:05.
    assert sorted(hours) == [T0 + timedelta(minutes=m) for m in range(55, 126, 5)]
    assert hours[T0 + timedelta(minutes=90)].volume == 3 + 6  # 10:30-11:30: 10:30, 10:40, 10:50 + six


def test_the_job_watermark_waits_for_the_slowest_busy_partition() -> None:
    feed = Feed(lateness_ms=0)
    ahead = feed.send(event(1), event(20), partition=0, partitions=(0, 1))
    assert ahead.closed == []  # partition 1 has shown no event time yet
    behind = feed.send(event(2, "user:b"), partition=1, partitions=(0, 1))
    assert behind.closed == []  # partition 1 is at 10:02
    caught = feed.send(event(6, "user:b"), partition=1, partitions=(0, 1))
    assert closed(caught, "5m", "category") == {"cameras": (2, 2, 2.0)}


def test_an_idle_partition_does_not_hold_the_watermark() -> None:
    engine = WindowEngine(WindowState(partition_max={0: 10 * PANE_MS, 1: 2 * PANE_MS}), 0)
    assert engine.watermark((0, 1), idle=set()) == 2 * PANE_MS
    assert engine.watermark((0, 1), idle={1}) == 10 * PANE_MS
    assert engine.watermark((0, 1), idle={0, 1}) == 10 * PANE_MS


def test_search_events_without_a_listing_count_for_their_category_only() -> None:
    feed = Feed(lateness_ms=0)
    feed.send(event(1, kind="search", listing=None), event(2, listing=LAMP, category=None))
    result = feed.send(event(11))
    assert closed(result, "5m", "category") == {"cameras": (1, 1, 1.0)}
    assert closed(result, "5m", "listing") == {str(LAMP): (1, 1, 1.0)}


def test_panes_are_forgotten_once_no_open_window_needs_them() -> None:
    feed = Feed(lateness_ms=0)
    feed.send(event(1))
    feed.send(event(59, "user:b"))
    assert len(feed.engine.state.panes) == 4  # category and listing, at 10:00 and 10:55
    result = feed.send(event(61, "user:c"))  # watermark 11:01: the 10:00 pane is in no open window
    assert {p.start for p in result.dropped_panes} == {to_ms(T0)}


def test_velocity_and_score_follow_their_documented_formulas() -> None:
    assert velocity_of(12, 6) == 1.0 and velocity_of(3, 0) == 3.0 and velocity_of(2, 4) == -0.5
    score = trending_score({"view": 4, "add_to_cart": 1}, unique_users=2, velocity=1.0)
    assert score == pytest.approx((4 + 4) * math.sqrt(2 / 5) * (1 + math.log(2)), rel=1e-6)
    assert trending_score({"view": 3}, 3, -0.5) == 3.0
    assert trending_score({}, 0, 0.0) == 0.0
