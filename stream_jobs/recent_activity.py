"""Each signed-in user's recent activity in Redis (`activity:recent:{user}`), for the feed; new activity drops
the user's cached feed (`feed:cache:{user}`), so the next GET /v1/feed is computed afresh."""

from __future__ import annotations

import json
from typing import Any

from schemas import names
from schemas.activity import ActivityBatch

RECENT_MAX = 50
RECENT_TTL_S = 7 * 86400
# Kinds about one listing that say what a user is interested in (a search names no listing).
INTEREST_KINDS = frozenset({"view", "click", "add_to_cart", "contact_seller"})


class RecentActivity:
    """LPUSH + LTRIM per user, newest first; a replayed batch pushes duplicates, which the feed folds."""

    def __init__(self, redis: Any, prefix: str = "") -> None:
        self.redis = redis
        self.prefix = prefix

    def remember(self, batch: ActivityBatch) -> int:
        """Push the batch's interest events of signed-in users; returns how many were kept."""
        by_user: dict[str, list[str]] = {}
        for event in batch.events:
            if event.user_id is None or event.listing_id is None or event.kind not in INTEREST_KINDS:
                continue
            by_user.setdefault(str(event.user_id), []).append(json.dumps({
                "kind": event.kind, "listing_id": str(event.listing_id), "category": event.category,
                "at": event.occurred_at.isoformat()}))
        if not by_user:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for user, items in by_user.items():
            key = f"{self.prefix}{names.RECENT_ACTIVITY_KEY_PREFIX}{user}"
            pipe.lpush(key, *items)
            pipe.ltrim(key, 0, RECENT_MAX - 1)
            pipe.expire(key, RECENT_TTL_S)
            pipe.delete(f"{self.prefix}{names.FEED_CACHE_KEY_PREFIX}{user}")
        pipe.execute()
        return sum(len(items) for items in by_user.values())

    def close(self) -> None:
        self.redis.close()
