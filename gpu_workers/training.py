"""`bazaar models train-condition`: embed the labelled set with the frozen model, train the head, save it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gpu_workers.condition import (
    DATA_FILE,
    DEFAULT_EPOCHS,
    DEFAULT_SEED,
    Evaluation,
    LoadedHead,
    dataset_digest,
    evaluate,
    file_version,
    load_examples,
    save_head,
    train_head,
    weights_path,
)
from gpu_workers.embedding import load_embedder

log = structlog.get_logger(__name__)
EMBED_BATCH = 64


@dataclass(frozen=True)
class TrainingResult:
    """What a training run wrote and how the head does on the held-out split."""

    path: Path
    version: str
    train_examples: int
    held_out: Evaluation


def train_condition(*, seed: int = DEFAULT_SEED, epochs: int = DEFAULT_EPOCHS, data: Path = DATA_FILE,
                    out: Path | None = None, console: Console | None = None) -> TrainingResult:
    """Reproducible from `seed`: one CPU thread and deterministic kernels make the weights file byte-equal."""
    out = out or weights_path()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with _progress(console) as progress:
            task = progress.add_task("loading all-MiniLM-L6-v2 (offline, CPU)", total=None)
            embedder = load_embedder("cpu")
            examples = load_examples(data)
            progress.update(task, description=f"embedding {len(examples)} labelled listings", total=1)
            vectors = embedder.encode([e.text for e in examples], batch_size=EMBED_BATCH)
            progress.update(task, completed=1)
            train = [i for i, e in enumerate(examples) if e.split == "train"]
            held = [i for i, e in enumerate(examples) if e.split == "held_out"]
            task = progress.add_task(f"training the head (seed {seed})", total=epochs)
            head = train_head(vectors[train], [examples[i] for i in train], seed=seed, epochs=epochs,
                              on_epoch=lambda _: progress.advance(task))
        loaded = LoadedHead(head, "unsaved")
        held_out = evaluate(loaded, vectors[held], [examples[i] for i in held])
        train_fit = evaluate(loaded, vectors[train], [examples[i] for i in train])
        version = save_head(head, out, {
            "seed": seed, "epochs": epochs, "data": data.name, "data_sha256": dataset_digest(data),
            "train_examples": len(train), "held_out": held_out.as_dict(), "train_fit": train_fit.as_dict(),
        })
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    assert version == file_version(out)
    log.info("enrichment.head.trained", version=version, **held_out.as_dict())
    return TrainingResult(out, version, len(train), held_out)


def held_out_evaluation(head: LoadedHead, data: Path = DATA_FILE) -> Evaluation:
    """Evaluate a saved head on the held-out split (tests and the README figure)."""
    examples = [e for e in load_examples(data) if e.split == "held_out"]
    vectors = load_embedder("cpu").encode([e.text for e in examples], batch_size=EMBED_BATCH)
    return evaluate(head, np.asarray(vectors), examples)


def _progress(console: Console | None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console or Console(stderr=True), transient=False)
