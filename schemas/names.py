"""One name for each shared thing: Kafka topics, PostgreSQL tables and the search alias.

Every layer may import this module (it is pure constants), so a topic or table is spelled out here once and
everywhere else refers to it. Topic names take a prefix (`bazaar.` in production) so tests can isolate theirs.
"""

from __future__ import annotations

TOPIC_PREFIX = "bazaar."

# Topic suffixes under TOPIC_PREFIX.
DOMAIN_AGGREGATES: tuple[str, ...] = ("listing", "order", "wallet", "licence", "trust", "user")
CHECKPOINTS_TOPIC = "audit.checkpoints"
ACTIVITY_TOPIC = "activity"
TRENDS_TOPIC = "trends"
ENRICHMENT_DLQ_TOPIC = "enrichment.dlq"
PROJECTIONS_DLQ_TOPIC = "projections.dlq"

# PostgreSQL tables shared across layers (the event store's own tables are eventsourcing's).
RELAY_POSITIONS_TABLE = "bazaar_relay_positions"
AUDIT_HEADS_TABLE = "bazaar_audit_heads"
PROJECTION_CHECKPOINTS_TABLE = "projection_checkpoints"
PROJECTION_STATUS_TABLE = "projection_status"
PROJECTION_DEAD_LETTERS_TABLE = "projection_dead_letters"
TOKEN_GENERATIONS_TABLE = "bazaar_token_generations"

# The live search index is always read through this alias (`<alias>-v<N>` behind it).
SEARCH_ALIAS = "bazaar-listings"

RELAY_NAME = "main"

# Redis key prefixes.
TOKEN_GENERATION_KEY_PREFIX = "bazaar:token-generation:"
# Auto-boost and the feed: promoted listings per segment (category), a user's recent activity, the cached feed.
PROMOTED_KEY_PREFIX = "feed:promoted:"
RECENT_ACTIVITY_KEY_PREFIX = "activity:recent:"
FEED_CACHE_KEY_PREFIX = "feed:cache:"


def topic(suffix: str, prefix: str = TOPIC_PREFIX) -> str:
    """The full name of a topic: `topic("order")` is `bazaar.order`."""
    return f"{prefix}{suffix}"


def domain_topic(aggregate: str, prefix: str = TOPIC_PREFIX) -> str:
    """The topic an aggregate's events are published to; unknown aggregates are a programming error."""
    if aggregate not in DOMAIN_AGGREGATES:
        raise KeyError(f"no domain topic for aggregate {aggregate!r}")
    return topic(aggregate, prefix)
