"""From consumed listing events to the listings a batch must enrich (pure: no I/O, no torch).

Per listing the worker remembers the version of its latest text (drafted or revised) and the latest text
version already enriched by this worker's model versions. An `Listing.Enriched` echo never causes work; it
names the text version it covers inside its `embedding_ref`, so it marks exactly that version as done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from schemas.base import EventSchema
from schemas.listing import ListingDrafted, ListingEnriched, ListingPublished, ListingRevised

REF_PREFIX = "listing"


def short_hash(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def embedding_ref(listing_id: UUID, text_version: int, embedding_version: str) -> str:
    """`listing:<id>:v<text version>:<hash of the embedding model version>` (the key in embedding_store)."""
    return f"{REF_PREFIX}:{listing_id}:v{text_version}:{short_hash(embedding_version)}"


def ref_text_version(ref: str | None) -> int | None:
    """The text version a ref of ours covers; None for a ref this worker did not write."""
    parts = (ref or "").split(":")
    if len(parts) != 4 or parts[0] != REF_PREFIX or not parts[2].startswith("v") or not parts[2][1:].isdigit():
        return None
    return int(parts[2][1:])


def idempotency_key(listing_id: UUID, text_version: int, model_version: str) -> str:
    """The same listing text under the same model versions always sends the same key: a re-run appends nothing."""
    return f"enrich:{listing_id}:v{text_version}:{short_hash(model_version)}"


@dataclass(frozen=True)
class WorkItem:
    """One listing text to enrich."""

    listing_id: UUID
    text_version: int
    title: str
    description: str


@dataclass
class _ListingState:
    text_version: int
    title: str | None
    description: str | None
    enriched_version: int = 0


@dataclass
class Tracker:
    """What the worker knows of each listing it has seen (bounded by the catalogue size)."""

    model_version: str
    _listings: dict[UUID, _ListingState] = field(default_factory=dict)

    def observe(self, event: EventSchema) -> None:
        """Fold one listing event into the state (any order of batches, each event at most once matters)."""
        state = self._listings.get(event.aggregate_id)
        if isinstance(event, ListingDrafted | ListingRevised):
            if state is None or event.version > state.text_version:
                enriched = state.enriched_version if state else 0
                self._listings[event.aggregate_id] = _ListingState(
                    event.version, event.title, event.description, enriched)
        elif isinstance(event, ListingEnriched) and event.model_version == self.model_version:
            covered = ref_text_version(event.embedding_ref)
            if covered is not None:
                state = state or self._listings.setdefault(event.aggregate_id, _ListingState(covered, None, None))
                state.enriched_version = max(state.enriched_version, covered)

    def pending(self, listing_ids: Iterable[UUID]) -> list[WorkItem]:
        """Listings whose latest known text is not yet enriched by these model versions (one item each)."""
        items = []
        for listing_id in dict.fromkeys(listing_ids):
            state = self._listings.get(listing_id)
            if state is None or state.title is None or state.enriched_version >= state.text_version:
                continue
            items.append(WorkItem(listing_id, state.text_version, state.title, state.description or ""))
        return items

    def mark_enriched(self, item: WorkItem) -> None:
        """The command for `item` was accepted (or replayed): drop the text, keep the versions."""
        state = self._listings.get(item.listing_id)
        if state is not None:
            state.enriched_version = max(state.enriched_version, item.text_version)
            if state.enriched_version >= state.text_version:
                state.title = state.description = None


def triggers_work(event: EventSchema) -> bool:
    """Drafted, revised and published listings are enriched; an Enriched echo or anything else is not."""
    return isinstance(event, ListingDrafted | ListingRevised | ListingPublished)
