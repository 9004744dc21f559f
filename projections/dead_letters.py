"""The dead-letter topic: records a projection could not apply, with the reason in the headers."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from kafka import KafkaProducer

from infra.adapters.kafka import make_producer
from infra.settings import Settings
from projections.core import DeadLetter

log = structlog.get_logger(__name__)


class DeadLetterSink:
    """Sends dead letters to the DLQ topic and waits for the broker before the batch commits."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self._producer: KafkaProducer | None = None
        self._settings = settings

    def __call__(self, dead: Sequence[DeadLetter]) -> None:
        if not dead:
            return
        if self._producer is None:
            self._producer = make_producer(self._settings, client_id="bazaar-projections-dlq")
        for letter in dead:
            self._producer.send(self.topic, key=letter.record.key, value=letter.record.value,
                                headers=letter.headers())
            log.warning("projection.dead_letter", projection=letter.projection, reason=letter.reason,
                        topic=letter.record.topic, offset=letter.record.offset)
        self._producer.flush(timeout=30)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
