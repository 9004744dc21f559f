"""Every projection, listed once; their names, topics and the path of each event are derived from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from infra.adapters.search import SearchPort
from projections.config import ProjectionConfig
from projections.core import Projection
from projections.read_models.dashboard import DashboardProjection
from projections.read_models.licences import LicencesProjection
from projections.read_models.listings import ListingsProjection
from projections.read_models.orders import OrdersProjection
from projections.read_models.search import SearchProjection
from projections.read_models.trust import TrustProjection
from projections.read_models.vectors import VectorsProjection
from projections.read_models.wallets import WalletsProjection
from schemas.names import DOMAIN_AGGREGATES, TOPIC_PREFIX, domain_topic

PROJECTIONS: tuple[type[Projection], ...] = (
    ListingsProjection, OrdersProjection, WalletsProjection, DashboardProjection, LicencesProjection,
    TrustProjection, VectorsProjection, SearchProjection,
)


def projection_names() -> list[str]:
    return [cls.name for cls in PROJECTIONS]


def projection_class(name: str) -> type[Projection]:
    for cls in PROJECTIONS:
        if cls.name == name:
            return cls
    raise KeyError(f"no projection {name!r}; known: {', '.join(projection_names())}")


def projection_topics(prefix: str = TOPIC_PREFIX) -> dict[str, tuple[str, ...]]:
    """Each projection's topics: what the composition root hands the read API for `?after=`."""
    return {cls.name: tuple(cls.topics(prefix)) for cls in PROJECTIONS}


def make_projection(config: ProjectionConfig, cls: type[Projection], port: SearchPort | None = None) -> Projection:
    """An instance of one projection (the search projection writes through a search port)."""
    if issubclass(cls, SearchProjection):
        return cls(port or config.search_port(), config.index_alias)
    return cls()


def make_projections(config: ProjectionConfig, port: SearchPort | None = None) -> list[Projection]:
    """Every projection (or those named in config.names), in registry order."""
    return [make_projection(config, cls, port) for cls in PROJECTIONS if not config.names or cls.name in config.names]


@dataclass(frozen=True)
class EventPath:
    """One row of "the life of an event": an event type, its topic, one projection and what it writes."""

    event: str
    topic: str
    projection: str
    stores: tuple[str, ...]


def event_paths(prefix: str = TOPIC_PREFIX) -> list[EventPath]:
    """For every handled event schema, each projection that handles it and the tables/index it writes."""
    handled = [(event, cls) for cls in PROJECTIONS for event in cls.handlers]
    first_seen = list(dict.fromkeys(event.schema_name for event, _ in handled))  # lifecycle order
    paths = [EventPath(event.schema_name, domain_topic(event.aggregate, prefix), cls.name, _stores(cls))
             for event, cls in handled]
    return sorted(paths, key=lambda p: (DOMAIN_AGGREGATES.index(p.topic.removeprefix(prefix)),
                                        first_seen.index(p.event), projection_names().index(p.projection)))


def _stores(cls: type[Projection]) -> tuple[str, ...]:
    tables = tuple(cls.tables)
    return (*tables, "search index") if issubclass(cls, SearchProjection) else tables


def life_of_an_event(routes: Mapping[str, tuple[str, ...]], prefix: str = TOPIC_PREFIX) -> str:
    """The Markdown table of docs/ARCHITECTURE.md; `routes` maps a projection to the read routes it serves."""
    lines = ["| event | topic | projection | table / index | read routes |", "| --- | --- | --- | --- | --- |"]
    for path in event_paths(prefix):
        stores = ", ".join(f"`{store}`" if store != "search index" else "search index" for store in path.stores)
        served = ", ".join(f"`{route}`" for route in routes.get(path.projection, ())) or "—"
        lines.append(f"| `{path.event}` | `{path.topic}` | `{path.projection}` | {stores} | {served} |")
    return "\n".join(lines) + "\n"
