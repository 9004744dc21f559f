"""Enrichers: each turns a batch of listings into some fields of their EnrichListing commands.

Today there is one, `TextEnricher` (embedding + condition and quality scores). An image enricher (a pHash
in torch, once listings carry images) is another class with the same two members; its version joins the
model version the events name, so a new image model re-enriches every listing exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import numpy as np
import structlog
from numpy.typing import NDArray

from gpu_workers.condition import LoadedHead
from gpu_workers.embedding import EMBEDDING_VERSION, MODEL_ID, TextEmbedder, listing_text
from gpu_workers.store import EmbeddingStore
from gpu_workers.work import WorkItem, embedding_ref

log = structlog.get_logger(__name__)
SCORE_DIGITS = 4  # a re-run from a stored vector gives the same request body, so its key replays


class ItemFailed(Exception):
    """One listing could not be enriched; the others of its batch carry on."""


class Enricher(Protocol):
    """What the worker asks of every enricher."""

    @property
    def version(self) -> str:
        """Model name and version; it joins the model version the events name."""
        ...

    def enrich(self, items: Sequence[WorkItem]) -> dict[UUID, dict[str, Any] | ItemFailed]:
        """Command fields per listing, or the failure of that one listing."""
        ...


@dataclass
class TextEnricher:
    """MiniLM embedding (stored in embedding_store) plus the head's condition and quality scores."""

    embedder: TextEmbedder
    head: LoadedHead
    store: EmbeddingStore
    batch_size: int

    @property
    def version(self) -> str:
        return f"{EMBEDDING_VERSION};{self.head.version}"

    def enrich(self, items: Sequence[WorkItem]) -> dict[UUID, dict[str, Any] | ItemFailed]:
        refs = {item.listing_id: embedding_ref(item.listing_id, item.text_version, EMBEDDING_VERSION)
                for item in items}
        vectors: dict[UUID, NDArray[np.float32] | ItemFailed] = {}
        stored = self.store.existing(list(refs.values()))
        fresh = [item for item in items if refs[item.listing_id] not in stored]
        vectors.update({item.listing_id: stored[refs[item.listing_id]] for item in items if item not in fresh})
        vectors.update(self._encode(fresh))
        self.store.put(MODEL_ID, {refs[i.listing_id]: v for i in fresh
                                  if not isinstance(v := vectors[i.listing_id], ItemFailed)})
        return self._score(refs, vectors)

    def _encode(self, items: Sequence[WorkItem]) -> dict[UUID, NDArray[np.float32] | ItemFailed]:
        """The whole batch at once; if that fails, one by one so that only the bad listing fails."""
        if not items:
            return {}
        texts = [listing_text(item.title, item.description) for item in items]
        try:
            return dict(zip([i.listing_id for i in items], self.embedder.encode(texts, self.batch_size),
                            strict=True))
        except Exception as exc:  # noqa: BLE001 - isolate the listing that broke the batch
            log.warning("enrichment.batch.encode_failed", error=str(exc), size=len(items))
        out: dict[UUID, NDArray[np.float32] | ItemFailed] = {}
        for item, text in zip(items, texts, strict=True):
            try:
                out[item.listing_id] = self.embedder.encode([text], 1)[0]
            except Exception as exc:  # noqa: BLE001 - this listing goes to the DLQ with the reason
                out[item.listing_id] = ItemFailed(f"encode failed: {type(exc).__name__}: {exc}")
        return out

    def _score(self, refs: dict[UUID, str], vectors: dict[UUID, NDArray[np.float32] | ItemFailed]
               ) -> dict[UUID, dict[str, Any] | ItemFailed]:
        good = [listing_id for listing_id, v in vectors.items() if not isinstance(v, ItemFailed)]
        out: dict[UUID, dict[str, Any] | ItemFailed] = {
            listing_id: v for listing_id, v in vectors.items() if isinstance(v, ItemFailed)}
        if good:
            scores = self.head.score(np.stack([vectors[listing_id] for listing_id in good]))  # type: ignore[misc]
            for n, listing_id in enumerate(good):
                out[listing_id] = {
                    "embedding_ref": refs[listing_id],
                    "condition_score": round(float(scores.condition[n]), SCORE_DIGITS),
                    "quality_score": round(float(scores.quality[n]), SCORE_DIGITS),
                }
        return out
