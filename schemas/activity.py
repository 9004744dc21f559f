"""Activity (views, searches, cart adds, clicks, contacts) and the trend windows computed from it.

Activity is not event-sourced: clients post batches to the read API, which publishes one `ActivityEvent` per
item to `bazaar.activity`. The trend job folds them into event-time windows and publishes each closed window
as a `TrendWindow` to `bazaar.trends`. Both are versioned like every published schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.base import Category

ActivityKind = Literal["view", "search", "add_to_cart", "click", "contact_seller"]
ACTIVITY_KINDS: tuple[ActivityKind, ...] = ("view", "search", "add_to_cart", "click", "contact_seller")
# Kinds about one listing: they must name it.
LISTING_KINDS: frozenset[str] = frozenset({"view", "add_to_cart", "click", "contact_seller"})
MAX_BATCH = 500
MAX_CLOCK_SKEW_S = 24 * 60 * 60
"""Event times further than this from the server's clock are refused (422 `activity.time_out_of_range`)."""

SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:-]{8,128}$"
SessionId = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]
Query = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
WindowName = Literal["5m", "1h"]
Scope = Literal["category", "listing"]


class ActivityIn(BaseModel):
    """One thing a client saw or did, at the client's clock (`occurred_at`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ActivityKind
    occurred_at: AwareDatetime = Field(description="when it happened, on the client (event time)")
    listing_id: UUID | None = Field(None, description="required for view, add_to_cart, click, contact_seller")
    category: Category | None = Field(None, description="the listing's or the search's category")
    query: Query | None = Field(None, description="required for search")
    session_id: SessionId | None = Field(
        None, description="anonymous callers: a stable session id (required without a bearer token)"
    )

    @model_validator(mode="after")
    def _check_kind_fields(self) -> ActivityIn:
        if self.kind in LISTING_KINDS and self.listing_id is None:
            raise ValueError(f"a {self.kind} event needs listing_id")
        if self.kind == "search" and self.query is None:
            raise ValueError("a search event needs query")
        return self


class ActivityBatchIn(BaseModel):
    """The body of POST /v1/activity: 1 to 500 events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[ActivityIn] = Field(min_length=1, max_length=MAX_BATCH)


class ActivityEvent(BaseModel):
    """One activity event (bazaar.activity carries them in batches: ActivityBatch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: ClassVar[str] = "activity.ActivityEvent"
    schema_version: ClassVar[int] = 1

    event_id: UUID = Field(description="unique per event; assigned by the read API")
    kind: ActivityKind
    actor: str = Field(description="who, for unique-user counts: `user:<uuid>` or `session:<id>`")
    user_id: UUID | None = Field(None, description="the authenticated user, None for anonymous sessions")
    listing_id: UUID | None = None
    listing_known: bool | None = Field(
        None, description="whether the listing read model knew the id (None: not checked)"
    )
    category: Category | None = None
    query: Query | None = None
    occurred_at: AwareDatetime = Field(description="event time: the client's clock")
    received_at: AwareDatetime = Field(description="when the read API accepted it")


class ActivityBatch(BaseModel):
    """One accepted POST /v1/activity batch as one bazaar.activity record (key = the caller's actor).

    One record per batch, not per event: the broker and the clients' batching then cost per request, not per
    event. The events keep the client's order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: ClassVar[str] = "activity.ActivityBatch"
    schema_version: ClassVar[int] = 1

    batch_id: UUID = Field(description="unique per accepted request")
    events: list[ActivityEvent] = Field(min_length=1, max_length=MAX_BATCH)


class TrendWindow(BaseModel):
    """One closed event-time window of one category or listing, as published to bazaar.trends.

    (window, scope, key, start) identifies it and `revision` versions it: a consumer keeps the highest
    revision of each identity (the job may publish a window again after a crash, always identically).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: ClassVar[str] = "trends.TrendWindow"
    schema_version: ClassVar[int] = 1

    window: WindowName = Field(description="5m tumbling, or 1h hopping every 5 minutes")
    scope: Scope
    key: str = Field(description="the category name, or the listing id")
    category: str | None = Field(None, description="the listing's category (listing scope)")
    start: AwareDatetime
    end: AwareDatetime
    revision: int = Field(1, ge=1, description="windows are final when closed: always 1 in this version")
    volume: int = Field(ge=0, description="events in the window")
    unique_users: int = Field(ge=0, description="distinct actors (exact)")
    kinds: dict[str, int] = Field(description="events per activity kind")
    previous_volume: int = Field(ge=0, description="volume of the window just before (same length)")
    velocity: float = Field(description="(volume - previous_volume) / max(previous_volume, 1)")
    score: float = Field(ge=0, description="trending score (docs/DECISIONS.md, Stream jobs)")

    @property
    def identity(self) -> str:
        """The window key: the same window always has the same identity."""
        return window_identity(self.window, self.scope, self.key, self.start)


def window_identity(window: str, scope: str, key: str, start: datetime) -> str:
    """`5m|category|cameras|2026-12-02T10:05:00+00:00`."""
    return f"{window}|{scope}|{key}|{start.isoformat()}"


class TrendItemPublic(BaseModel):
    """One ranked category or listing of a closed window."""

    key: str = Field(description="category name or listing id")
    category: str | None = None
    score: float
    volume: int
    unique_users: int
    velocity: float


class TrendsPublic(BaseModel):
    """GET /v1/trends: the top items of the latest closed window."""

    window: WindowName
    scope: Scope
    category: str | None
    start: datetime | None = Field(description="the window shown; None before any window closed")
    end: datetime | None
    items: list[TrendItemPublic]


class TrendsUpdate(BaseModel):
    """One message of GET /v1/trends/stream: every window of one length that closed at `end`."""

    window: WindowName
    start: datetime
    end: datetime
    categories: list[TrendItemPublic]
    listings: list[TrendItemPublic]


class ActivityAccepted(BaseModel):
    """202 of POST /v1/activity: every event is durably in bazaar.activity."""

    accepted: int
    unknown_listings: int = Field(description="events naming a listing id the read model does not know")


class TrendKeys:
    """The Redis keys of the trend read models (shared by the job that writes and the API that reads)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def listings_in_category(self, window: str, category: str) -> str:
        # 5m: the spec's `trends:5m:{category}`; 1h: `trends:1h:listings:{category}`.
        if window == "5m":
            return f"{self.prefix}trends:5m:{category}"
        return f"{self.prefix}trends:{window}:listings:{category}"

    def listings(self, window: str) -> str:
        return f"{self.prefix}trends:{window}:listings"

    def categories(self, window: str) -> str:
        # The hourly ranking is the spec's `trending_categories`; the 5-minute one sits beside it.
        return f"{self.prefix}trending_categories" if window == "1h" else f"{self.prefix}trending_categories:{window}"

    @staticmethod
    def details(ranking: str) -> str:
        """Hash member -> TrendItemPublic JSON beside each ranking."""
        return f"{ranking}:details"

    @staticmethod
    def meta(ranking: str) -> str:
        """Hash {start, end, revision} of the window a ranking shows (the idempotency guard)."""
        return f"{ranking}:window"

    @property
    def updates(self) -> str:
        """Redis stream of TrendsUpdate JSON: its entry ids are the SSE event ids."""
        return f"{self.prefix}trends:updates"


__all__ = [
    "ACTIVITY_KINDS",
    "MAX_BATCH",
    "MAX_CLOCK_SKEW_S",
    "ActivityAccepted",
    "ActivityBatch",
    "ActivityBatchIn",
    "ActivityEvent",
    "ActivityIn",
    "TrendItemPublic",
    "TrendKeys",
    "TrendWindow",
    "TrendsPublic",
    "TrendsUpdate",
    "window_identity",
]
