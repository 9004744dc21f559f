"""Domain events to their published schema (fields renamed to the envelope, secrets redacted)."""

from __future__ import annotations

from typing import Any

from domain.chain import event_hash, event_type_name, to_envelope
from schemas.base import EventSchema
from schemas.messages import TOPIC_PREFIX, EventMessage, encode_event
from schemas.registry import REGISTRY


def to_schema(event: Any, validate: bool = True) -> EventSchema:
    """The latest schema instance of a stored domain event.

    `validate=False` trusts the domain event's types (the relay's hot path): the schema test suite
    keeps every domain event's fields equal to its schema's.
    """
    model = REGISTRY.latest_for_event_type(event_type_name(event))
    fields = to_envelope(event)
    for name in model.redacted_fields:
        fields[name] = None
    known = {k: v for k, v in fields.items() if k in model.model_fields}
    return model.model_validate(known) if validate else model.model_construct(**known)


def to_message(
    event: Any,
    notification_id: int,
    topic_prefix: str = TOPIC_PREFIX,
    digest: str | None = None,
    validate: bool = True,
) -> EventMessage:
    """The Kafka message of a stored domain event at its notification id (`digest`: its known hash)."""
    schema = to_schema(event, validate)
    return encode_event(schema, notification_id, digest or event_hash(event), topic_prefix)
