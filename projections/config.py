"""Where projections read and write: topic prefix, PostgreSQL schema and search alias (tests isolate all)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from infra.adapters.search import SearchPort
from infra.settings import Settings
from projections.core import connect
from schemas.names import PROJECTIONS_DLQ_TOPIC, SEARCH_ALIAS, TOPIC_PREFIX, topic

BATCH_SIZE = 1000


@dataclass(frozen=True)
class ProjectionConfig:
    """One deployment of the projections; `names` limits it to some projections (all when empty)."""

    settings: Settings
    topic_prefix: str = TOPIC_PREFIX
    schema: str = "public"
    index_alias: str = SEARCH_ALIAS
    batch_size: int = BATCH_SIZE
    names: tuple[str, ...] = field(default=())

    @property
    def dlq_topic(self) -> str:
        return topic(PROJECTIONS_DLQ_TOPIC, self.topic_prefix)

    def connect(self) -> psycopg.Connection[Any]:
        return connect(self.settings.pg_conninfo, self.schema)

    def search_port(self) -> SearchPort:
        return SearchPort.from_settings(self.settings)
