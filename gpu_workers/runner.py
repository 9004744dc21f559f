"""Builds the enrichment worker from Settings and runs it until SIGTERM (`bazaar workers enrich`)."""

from __future__ import annotations

import secrets
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch
from rich.console import Console

from gpu_workers.client import CommandClient, Credentials
from gpu_workers.condition import LoadedHead, load_head
from gpu_workers.embedding import DeviceChoice, TextEmbedder, load_embedder
from gpu_workers.enrichers import TextEnricher
from gpu_workers.store import EmbeddingStore
from gpu_workers.worker import DeadLetters, EnrichmentWorker, WorkerConfig
from infra.adapters.kafka import make_consumer, make_producer
from infra.secrets import stored_secret
from infra.settings import Settings
from schemas.names import ENRICHMENT_DLQ_TOPIC, topic

log = structlog.get_logger(__name__)
ACCOUNT_SECRET = "enrichment-account-password"


def account_credentials(settings: Settings) -> Credentials:
    """The service account's e-mail and password (generated once under home/secrets when not set)."""
    password = settings.enrichment_account_password or stored_secret(
        settings, ACCOUNT_SECRET, lambda: secrets.token_urlsafe(24))
    return Credentials(settings.enrichment_account_email, password)


def command_api_url(settings: Settings) -> str:
    return settings.enrichment_command_api_url or f"http://{settings.bind_host}:{settings.command_api_port}"


def batch_size(settings: Settings, device: str) -> int:
    return settings.enrichment_batch_size_cuda if device == "cuda" else settings.enrichment_batch_size_cpu


@dataclass
class Models:
    """The loaded embedding model and head (shared by the worker and the benchmark)."""

    embedder: TextEmbedder
    head: LoadedHead


def load_models(settings: Settings, device: DeviceChoice, console: Console | None = None) -> Models:
    """Load both models with a progress line (torch import and model load take seconds)."""
    with (console or Console(stderr=True)).status(f"loading all-MiniLM-L6-v2 and the condition head ({device})"):
        embedder = load_embedder(device)
        head = load_head(Path(settings.enrichment_weights) if settings.enrichment_weights else None)
    return Models(embedder, head)


def build_worker(settings: Settings, models: Models, *, group_id: str | None = None) -> EnrichmentWorker:
    """The worker wired to Kafka, PostgreSQL and the command API as Settings say."""
    size = batch_size(settings, models.embedder.device)
    config = WorkerConfig(
        source_topic=topic("listing", settings.enrichment_topic_prefix),
        dlq_topic=topic(ENRICHMENT_DLQ_TOPIC, settings.enrichment_topic_prefix),
        batch_size=size, batch_wait_s=settings.enrichment_batch_wait_ms / 1000,
        http_concurrency=settings.enrichment_http_concurrency,
    )
    consumer = make_consumer(settings, group_id=group_id or settings.enrichment_group, max_poll_records=size,
                             client_id="bazaar-enrichment")
    producer = make_producer(settings, client_id="bazaar-enrichment-dlq")
    store = EmbeddingStore(settings.pg_conninfo)
    client = CommandClient(command_api_url(settings), account_credentials(settings),
                           max_attempts=settings.enrichment_max_attempts)
    enricher = TextEnricher(models.embedder, models.head, store, size)
    return EnrichmentWorker(config, consumer, [enricher], client, DeadLetters(producer, config.dlq_topic))


def run_worker(settings: Settings, device: DeviceChoice) -> None:
    """Run until SIGTERM or SIGINT; the batch in flight is finished and committed first."""
    torch.set_grad_enabled(False)
    models = load_models(settings, device)
    worker = build_worker(settings, models)
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("enrichment.worker.stopping", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        worker.run(stop)
    finally:
        worker.close()
        worker.dead_letters.producer.close()
