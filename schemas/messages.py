"""The wire format of domain events on Kafka, shared by the relay and every consumer.

topic   `bazaar.<aggregate>`            key   aggregate id (UTF-8 text of the UUID)
value   the event schema as JSON        headers  event_type, schema_name, schema_version,
                                                 notification_id, event_hash
Consumers decode with `decode_event`, which upcasts older schema versions to the latest model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.base import EventSchema
from schemas.names import TOPIC_PREFIX as TOPIC_PREFIX
from schemas.names import topic
from schemas.registry import REGISTRY, SchemaRegistry


@dataclass(frozen=True)
class EventMessage:
    """One event as published: topic, key, value and headers."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)


def header_value(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode()
    return None


def encode_event(
    event: EventSchema, notification_id: int, event_hash: str, topic_prefix: str = TOPIC_PREFIX
) -> EventMessage:
    """The Kafka message of an event schema instance."""
    value = event.model_dump_json().encode()
    headers = [
        ("event_type", event.event_type.encode()),
        ("schema_name", event.schema_name.encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("notification_id", str(notification_id).encode()),
        ("event_hash", event_hash.encode()),
    ]
    key = str(event.aggregate_id).encode()
    return EventMessage(topic(event.aggregate, topic_prefix), key, value, headers)


class PoisonMessage(ValueError):
    """A message that is not a decodable Bazaar event; `reason` goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_event(
    value: bytes, headers: Sequence[tuple[str, bytes]] | None, registry: SchemaRegistry = REGISTRY
) -> EventSchema:
    """Validate a message's value with its (upcast) schema; PoisonMessage when it cannot be read."""
    name = header_value(headers, "schema_name")
    version = header_value(headers, "schema_version")
    if name is None or version is None or not version.isdigit():
        raise PoisonMessage("missing or malformed schema_name / schema_version headers")
    try:
        data: Mapping[str, Any] = json.loads(value)
        model = registry.parse(name, int(version), data)
    except Exception as exc:  # every reason a value is unreadable is the same fault for a consumer
        raise PoisonMessage(f"{name} v{version}: {exc}") from exc
    if not isinstance(model, EventSchema):
        raise PoisonMessage(f"{name} is not an event schema")
    return model
