"""What one read API instance reads from: schema, search alias, wait limits, throttle."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infra.settings import Settings
from schemas.names import SEARCH_ALIAS

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def rate_limit_of(requests: int, window_s: int) -> str | None:
    """`requests` per `window_s` seconds in `limits` notation; 0 requests turns throttling off."""
    if requests < 0 or window_s < 1:
        raise ValueError(f"a rate limit needs requests >= 0 and a window >= 1 s, not {requests}/{window_s} s")
    return f"{requests}/{window_s} seconds" if requests > 0 else None


@dataclass(frozen=True)
class ReadApiConfig:
    """Options of the read API; the defaults are the contract in docs/READ_MODELS.md."""

    # PostgreSQL schema holding the rm_* tables; None reads the server's default search path (public).
    pg_schema: str | None = None
    search_alias: str = SEARCH_ALIAS
    # `?after=` waits at most this long (then 408), polling the checkpoints at this interval.
    after_timeout_s: float = 5.0
    after_poll_s: float = 0.02
    # Per client IP, in `limits` notation; None turns throttling off.
    rate_limit: str | None = "100/1 seconds"
    rate_limit_prefix: str = "bazaar-reads"
    # Kafka end offsets are fetched at most this often while reads wait.
    end_offsets_ttl_s: float = 0.1
    # Semantic and hybrid search rank at most this many nearest neighbours.
    semantic_candidates: int = 1000

    def __post_init__(self) -> None:
        # The schema name is spliced into a connection option, so only plain identifiers pass.
        if self.pg_schema is not None and not _IDENTIFIER.match(self.pg_schema):
            raise ValueError(f"pg_schema must be a lower-case SQL identifier, not {self.pg_schema!r}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ReadApiConfig:
        """The options `BAZAAR_READ_*` settings set, then explicit overrides."""
        from_settings = {
            "rate_limit": rate_limit_of(settings.read_rate_limit, settings.read_rate_limit_window_s),
            "after_timeout_s": settings.read_after_timeout_s,
            "end_offsets_ttl_s": settings.read_end_offsets_ttl_s,
        }
        return cls(**{**from_settings, **overrides})

    @property
    def search_path(self) -> str | None:
        """The search_path connection option; public stays on it for the pgvector types."""
        return None if self.pg_schema is None else f"{self.pg_schema},public"
