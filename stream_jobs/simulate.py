"""`bazaar simulate`: realistic activity posted to the read API (hot categories, Zipf listings, sessions).

Traffic model: a few hot categories draw most users; each user browses one category per session; listing
popularity within a category is Zipf (rank^-1.1); each step is a view (60 %), click (15 %), search (10 %),
add_to_cart (10 %) or contact_seller (5 %). Listing ids are stable (uuid5 of category and rank), so runs
are comparable. With `--compress K` event time runs K times faster than the wall clock and ends at now, so a
few wall-clock minutes fill an hour of windows (event times stay within the API's one-day limit).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from schemas.activity import MAX_BATCH

CATEGORIES = ("laptops", "cameras", "phones", "ai-models", "datasets", "furniture", "books", "bikes",
              "watches", "audio", "games", "tools")
HOT = ("laptops", "ai-models", "cameras")
HOT_SHARE = 0.6
LISTINGS_PER_CATEGORY = 200
ZIPF_S = 1.1
KINDS = (("view", 0.60), ("click", 0.15), ("search", 0.10), ("add_to_cart", 0.10), ("contact_seller", 0.05))
SESSION_STEPS = 12
NAMESPACE = uuid.UUID("6f1c1d2e-8a2b-4e53-9a53-5b1f3b1d6a10")


def listing_id(category: str, rank: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{category}/{rank}")


@dataclass
class Traffic:
    """A seeded generator of activity items (the JSON the API takes) for `users` users."""

    users: int
    seed: int = 7
    rng: random.Random = field(init=False)
    _ranks: list[int] = field(init=False)
    _rank_weights: list[float] = field(init=False)
    _sessions: dict[int, tuple[str, str, int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._ranks = list(range(1, LISTINGS_PER_CATEGORY + 1))
        self._rank_weights = [rank ** -ZIPF_S for rank in self._ranks]

    def _category(self) -> str:
        if self.rng.random() < HOT_SHARE:
            return self.rng.choice(HOT)
        return self.rng.choice(CATEGORIES)

    def _session(self, user: int) -> tuple[str, str, int]:
        session_id, category, steps = self._sessions.get(user, ("", "", 0))
        if steps <= 0:
            session_id = f"sim-{user}-{self.rng.getrandbits(32):08x}"
            category, steps = self._category(), self.rng.randint(1, 2 * SESSION_STEPS)
        self._sessions[user] = (session_id, category, steps - 1)
        return session_id, category, steps

    def item(self, occurred_at: datetime) -> dict[str, Any]:
        """One activity item of a random user's session."""
        session_id, category, _ = self._session(self.rng.randrange(self.users))
        kind = self.rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
        item: dict[str, Any] = {"kind": kind, "occurred_at": occurred_at.isoformat(), "category": category,
                                "session_id": session_id}
        if kind == "search":
            item["query"] = f"{category} {self.rng.choice(('cheap', 'new', 'used', 'best', 'vintage'))}"
        else:
            rank = self.rng.choices(self._ranks, weights=self._rank_weights)[0]
            item["listing_id"] = str(listing_id(category, rank))
        return item

    def batches(self, count: int, size: int, start: datetime, step: timedelta) -> Iterator[list[dict[str, Any]]]:
        """`count` batches of `size` items whose event times advance by `step` per item from `start`."""
        moment = start
        for _ in range(count):
            batch = []
            for _ in range(size):
                batch.append(self.item(moment))
                moment += step
            yield batch


def simulate(
    users: int = typer.Option(500, help="distinct users (each in sessions of a few steps)"),
    rate: float = typer.Option(1000.0, help="events per wall-clock second"),
    minutes: float = typer.Option(5.0, help="minutes of event time to simulate"),
    compress: float = typer.Option(1.0, help="event time runs this many times faster than the wall clock"),
    url: str = typer.Option(None, help="read API base URL (default http://127.0.0.1:BAZAAR_READ_API_PORT)"),
    seed: int = typer.Option(7),
) -> None:
    """Post realistic activity to POST /v1/activity: a few hot categories, Zipf listing popularity, sessions."""
    import httpx

    from infra.settings import get_settings

    settings = get_settings()
    base = url or f"http://{settings.bind_host}:{settings.read_api_port}"
    traffic = Traffic(users, seed)
    wall_s = minutes * 60 / compress
    total = max(int(rate * wall_s), 1)
    # Event time ends at about now: a compressed run covers the last `minutes` before it finishes.
    start = datetime.now(UTC) + timedelta(seconds=wall_s) - timedelta(minutes=minutes) if compress > 1 \
        else datetime.now(UTC)
    step = timedelta(minutes=minutes) / total
    size = min(MAX_BATCH, max(1, int(rate / 10)))
    began, sent = time.monotonic(), 0
    with httpx.Client(base_url=base, timeout=30) as client:
        for batch in traffic.batches((total + size - 1) // size, size, start, step):
            response = client.post("/v1/activity", json={"events": batch})
            if response.status_code != 202:
                typer.echo(f"refused: {response.status_code} {response.text[:300]}", err=True)
                raise typer.Exit(1)
            sent += len(batch)
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
    elapsed = time.monotonic() - began
    typer.echo(f"posted {sent} events in {elapsed:.1f} s ({sent / elapsed:,.0f}/s) covering {minutes:g} min "
               f"of event time")
