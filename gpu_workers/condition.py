"""The condition and description-quality head: a small torch MLP on the frozen MiniLM embeddings.

Grades run 0 (for parts) .. 5 (new, sealed); the condition score is the expected grade / 5 (0..1; the
issue's 0-100 figure is this times 100). Quality is a 0..1 regression of how much useful detail a
description gives. Training is reproducible: one seed, one CPU thread, full-batch Adam, safetensors bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors.torch import load_file, save_file
from torch import nn

from gpu_workers.embedding import DIMENSIONS, EMBEDDING_VERSION

GRADES = 6
HEAD_NAME = "condition_head"
HEAD_VERSION = "v1"
WEIGHTS_DIR = Path(__file__).with_name("weights")
DATA_FILE = Path(__file__).with_name("data") / "condition_listings.jsonl"
DEFAULT_SEED = 1202
DEFAULT_EPOCHS = 200
HIDDEN = 64
DROPOUT = 0.3
WEIGHT_DECAY = 1e-2


def weights_path(directory: Path = WEIGHTS_DIR, version: str = HEAD_VERSION) -> Path:
    return directory / f"{HEAD_NAME}-{version}.safetensors"


class ConditionHead(nn.Module):
    """384 -> 64 -> (6 grade logits, 1 quality logit)."""

    def __init__(self, dimensions: int = DIMENSIONS, hidden: int = HIDDEN, dropout: float = DROPOUT) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dimensions, hidden), nn.GELU(), nn.Dropout(dropout))
        self.grade = nn.Linear(hidden, GRADES)
        self.quality = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.grade(h), self.quality(h).squeeze(-1)


@dataclass(frozen=True)
class Scores:
    """Per listing: condition score 0..1, its nearest grade (ordinal: errors stay small), quality 0..1."""

    condition: NDArray[np.float64]
    grade: NDArray[np.int64]
    quality: NDArray[np.float64]


@dataclass(frozen=True)
class LoadedHead:
    """A trained head with its version (file name + content hash), as named in Listing.Enriched."""

    head: ConditionHead
    version: str

    def score(self, embeddings: NDArray[np.float32]) -> Scores:
        """Scores of unit embeddings (n x 384), computed in fp32 on CPU (tiny: microseconds a listing)."""
        with torch.no_grad():
            logits, quality = self.head(torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)))
            probs = torch.softmax(logits, dim=-1)
            expected = (probs * torch.arange(GRADES, dtype=torch.float32)).sum(-1) / (GRADES - 1)
        return Scores(condition=expected.clamp(0, 1).double().numpy(),
                      grade=torch.round(expected * (GRADES - 1)).numpy().astype(np.int64),
                      quality=torch.sigmoid(quality).double().numpy())


def file_version(path: Path) -> str:
    """`condition_head-v1@<sha256 prefix>`: the file's name and the hash of its bytes."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{path.name.removesuffix('.safetensors')}@{digest}"


def load_head(path: Path | None = None) -> LoadedHead:
    """The versioned weights file shipped in the repository (or another one)."""
    path = path or weights_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `bazaar models train-condition`")
    head = ConditionHead()
    head.load_state_dict(load_file(str(path)))
    head.eval()
    return LoadedHead(head, file_version(path))


@dataclass(frozen=True)
class Example:
    """One labelled listing of the data set."""

    text: str
    grade: int
    quality: float
    split: str
    category: str


def load_examples(path: Path = DATA_FILE) -> list[Example]:
    from gpu_workers.embedding import listing_text

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example(listing_text(r["title"], r["description"]), int(r["grade"]), float(r["quality"]),
                    r["split"], r["category"]) for r in rows]


@dataclass(frozen=True)
class Evaluation:
    """Held-out figures of a head."""

    examples: int
    exact: float
    within_one: float
    quality_mae: float

    def as_dict(self) -> dict[str, float | int]:
        return {"examples": self.examples, "exact_accuracy": round(self.exact, 4),
                "within_one_grade_accuracy": round(self.within_one, 4), "quality_mae": round(self.quality_mae, 4)}


def evaluate(head: LoadedHead, embeddings: NDArray[np.float32], examples: Sequence[Example]) -> Evaluation:
    scores = head.score(embeddings)
    grades = np.array([e.grade for e in examples])
    quality = np.array([e.quality for e in examples])
    return Evaluation(len(examples), float(np.mean(scores.grade == grades)),
                      float(np.mean(np.abs(scores.grade - grades) <= 1)),
                      float(np.mean(np.abs(scores.quality - quality))))


def train_head(embeddings: NDArray[np.float32], examples: Sequence[Example], *, seed: int, epochs: int,
               on_epoch: Callable[[int], Any] | None = None, hidden: int = HIDDEN, dropout: float = DROPOUT,
               weight_decay: float = WEIGHT_DECAY) -> ConditionHead:
    """Full-batch training from `seed`: cross-entropy on grades plus squared error on quality."""
    torch.manual_seed(seed)
    head = ConditionHead(hidden=hidden, dropout=dropout)
    x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    grades = torch.tensor([e.grade for e in examples], dtype=torch.long)
    quality = torch.tensor([e.quality for e in examples], dtype=torch.float32)
    optimiser = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=weight_decay)
    head.train()
    for epoch in range(epochs):
        optimiser.zero_grad()
        logits, quality_logit = head(x)
        loss = nn.functional.cross_entropy(logits, grades, label_smoothing=0.05)
        loss = loss + 4.0 * nn.functional.mse_loss(torch.sigmoid(quality_logit), quality)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        if on_epoch is not None:
            on_epoch(epoch)
    head.eval()
    return head


def save_head(head: ConditionHead, path: Path, metadata: dict[str, Any]) -> str:
    """Write the weights (safetensors, byte-reproducible) and a JSON card beside them; returns the version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in head.state_dict().items()}
    save_file(state, str(path), metadata={"embedding": EMBEDDING_VERSION})
    version = file_version(path)
    card = {"version": version, "embedding": EMBEDDING_VERSION, **metadata}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return version


def dataset_digest(path: Path = DATA_FILE) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
