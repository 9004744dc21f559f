"""The listing search index: a listing fold in a private state table, each changed row bulk-written to the
index (alias `bazaar-listings` -> `bazaar-listings-v<N>`) with external versioning by aggregate version.

The bulk runs inside the batch's PostgreSQL transaction, before the commit: a crash after the bulk replays
the batch, and the index answers the replayed writes `stale` (version not above the stored one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import psycopg

from infra.adapters.search import DocWrite, SearchPort
from projections.core import Handlers, Projection, Tables
from projections.read_models.listings import LISTINGS_DDL, listing_handlers
from schemas.base import EventSchema
from schemas.names import SEARCH_ALIAS

DEFAULT_ALIAS = SEARCH_ALIAS
STATE_TABLE = "rm_search_listings"

MAPPINGS: Mapping[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "title": {"type": "text", "analyzer": "standard",
                  "fields": {"folded": {"type": "text", "analyzer": "folded"}}},
        "description": {"type": "text", "analyzer": "standard"},
        "category": {"type": "keyword"},
        "kind": {"type": "keyword"},
        "status": {"type": "keyword"},
        "currency": {"type": "keyword"},
        "price_amount": {"type": "long"},
        "condition_score": {"type": "float"},
        "seller_id": {"type": "keyword"},
        "created_at": {"type": "date"},
        "boosted_until": {"type": "date"},
    },
}
INDEX_SETTINGS: Mapping[str, Any] = {
    "analysis": {"analyzer": {"folded": {"type": "custom", "tokenizer": "standard",
                                          "filter": ["lowercase", "asciifolding"]}}},
}
_DOC_COLUMNS = ("listing_id, title, description, category, kind, status, currency, price_amount,"
                " condition_score, seller_id, created_at, boosted_until, version")


def index_version(alias: str, index: str) -> int:
    match = re.fullmatch(re.escape(alias) + r"-v(\d+)", index)
    return int(match.group(1)) if match else 0


def next_index_name(port: SearchPort, alias: str) -> str:
    """`<alias>-v<N+1>` where N is the highest version present (live or left over)."""
    existing = port.client.indices.get(index=f"{alias}-v*", allow_no_indices=True, expand_wildcards="all")
    highest = max((index_version(alias, name) for name in existing), default=0)
    return f"{alias}-v{highest + 1}"


def ensure_alias(port: SearchPort, alias: str) -> str:
    """The index behind the alias, creating `<alias>-v1` and the alias when there is none."""
    targets = port.alias_targets(alias)
    if targets:
        return targets[0]
    index = next_index_name(port, alias)
    port.create_index(index, MAPPINGS, INDEX_SETTINGS)
    port.swap_alias(alias, index)
    return index


def document(row: Sequence[Any]) -> tuple[str, int, dict[str, Any]]:
    """(id, version, search document) of a state-table row selected with _DOC_COLUMNS."""
    (listing_id, title, description, category, kind, status, currency, price, score, seller, created,
     boosted, version) = row
    doc = {
        "title": title, "description": description, "category": category, "kind": kind, "status": status,
        "currency": currency, "price_amount": price, "condition_score": score, "seller_id": str(seller),
        "created_at": created.isoformat(), "boosted_until": boosted.isoformat() if boosted else None,
    }
    return str(listing_id), int(version), doc


class SearchProjection(Projection):
    """Listing documents in the search index; `target` is the alias (live) or the new index (rebuild)."""

    name: ClassVar[str] = "search"
    tables: ClassVar[Mapping[str, str]] = {STATE_TABLE: LISTINGS_DDL}
    handlers: ClassVar[Handlers] = listing_handlers(STATE_TABLE)

    def __init__(self, port: SearchPort, alias: str = DEFAULT_ALIAS) -> None:
        self.port = port
        self.alias = alias
        self.target = alias

    def after_batch(self, cur: psycopg.Cursor[Any], tables: Tables, events: Sequence[EventSchema]) -> None:
        ids = list({event.aggregate_id for event in events})
        rows = cur.execute(
            f"SELECT {_DOC_COLUMNS} FROM {tables[STATE_TABLE]} WHERE listing_id = ANY(%s)", (ids,)
        ).fetchall()
        writes = [DocWrite(doc_id, version, doc) for doc_id, version, doc in map(document, rows)]
        if writes:
            # Live batches are refreshed before the checkpoint commits, so a read that waited for this
            # position (?after=) finds the documents; a rebuild refreshes once, before the swap.
            self.port.bulk(self.target, writes, refresh=self.target == self.alias)
