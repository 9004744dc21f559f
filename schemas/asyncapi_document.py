"""The AsyncAPI 3.0.0 document of every published topic and event schema version: a pure function.

Every version of every event schema is listed (a consumer reading from offset 0 meets old versions; the
`schema_version` header says which), with the message headers and the Kafka bindings (key = aggregate id,
partitions, retention). Payloads are the pydantic JSON Schemas with their `$defs` moved to
`components.schemas`, so that every `$ref` resolves within the document. Partition counts and retention are
the deployment's (infra/topics.py passes its catalogue in).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from schemas import names
from schemas.activity import ActivityBatch, TrendWindow
from schemas.base import EventSchema
from schemas.export import json_schema
from schemas.registry import REGISTRY, SchemaRegistry

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
HASH_PATTERN = "^[0-9a-f]{64}$"


class ChannelSpec(Protocol):
    """What the document needs to know of a topic (infra's TopicSpec has it); retention < 0 is forever."""

    @property
    def name(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def retention_ms(self) -> int: ...
    @property
    def description(self) -> str: ...


def _channel_id(topic: str) -> str:
    """bazaar.audit.checkpoints -> auditCheckpoints."""
    parts = topic.removeprefix(names.TOPIC_PREFIX).split(".")
    return parts[0] + "".join(part.capitalize() for part in parts[1:])


def _message_id(model: type[EventSchema]) -> str:
    return f"{model.schema_name}.v{model.schema_version}"


def _hoist_defs(schema: dict[str, Any], shared: dict[str, Any], owner: str) -> dict[str, Any]:
    """Move `$defs` to components.schemas and point the `$ref`s there (renamed on a clash)."""
    schema = copy.deepcopy(schema)
    renames: dict[str, str] = {}
    for name, definition in schema.pop("$defs", {}).items():
        target = name if shared.get(name, definition) == definition else f"{owner}_{name}"
        shared[target] = definition
        renames[name] = target

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node["$ref"] = f"#/components/schemas/{renames.get(ref[8:], ref[8:])}"
            for value in node.values():
                rewrite(value)
        elif isinstance(node, list):
            for value in node:
                rewrite(value)
        return node

    rewrite(schema)
    for definition in list(shared.values()):
        rewrite(definition)
    return schema


def _payload(model: type[EventSchema], shared: dict[str, Any]) -> dict[str, Any]:
    schema = json_schema(model)
    # Inside one document a `$id` would rebase every `$ref` below it: keep the id as an extension.
    schema["x-schema-id"] = schema.pop("$id", None)
    return _hoist_defs(schema, shared, model.schema_name)


def _headers(model: type[EventSchema]) -> dict[str, Any]:
    """The Kafka headers of an event message (all text, as kafka-python hands them over)."""
    return {
        "type": "object",
        "required": ["event_type", "schema_name", "schema_version", "notification_id", "event_hash"],
        "properties": {
            "event_type": {"type": "string", "const": model.event_type,
                           "description": "the domain event's type name, hashed with the event"},
            "schema_name": {"type": "string", "const": model.schema_name},
            "schema_version": {"type": "string", "const": str(model.schema_version)},
            "notification_id": {"type": "string", "pattern": "^[0-9]+$",
                                "description": "position in the event store's notification log"},
            "event_hash": {"type": "string", "pattern": HASH_PATTERN,
                           "description": "sha256 of the event; the next event's prev_hash"},
        },
    }


def _event_message(model: type[EventSchema], shared: dict[str, Any]) -> dict[str, Any]:
    summary = (model.__doc__ or model.event_type).strip().splitlines()[0]
    message: dict[str, Any] = {
        "name": model.schema_name,
        "title": f"{model.event_type} v{model.schema_version}",
        "summary": summary,
        "contentType": "application/json",
        "headers": _headers(model),
        "payload": _payload(model, shared),
        "bindings": {"kafka": {"key": {"type": "string", "format": "uuid",
                                       "description": "the aggregate id: one aggregate, one partition"},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if model.redacted_fields:
        message["description"] = (f"Published with {', '.join(sorted(model.redacted_fields))} set to null: "
                                  "the event's hash can only be recomputed from the event store.")
    return message


def _checkpoint_message() -> dict[str, Any]:
    return {
        "name": "SignedTreeHead",
        "title": "Signed tree head",
        "summary": "An Ed25519-signed RFC 6962 Merkle tree head over the whole event log.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "required": ["tree_size", "root_hash", "timestamp_ms", "key_id", "signature"],
            "properties": {
                "tree_size": {"type": "integer", "minimum": 0, "description": "events covered, from the first"},
                "root_hash": {"type": "string", "description": "base64 of the SHA-256 Merkle root"},
                "timestamp_ms": {"type": "integer", "minimum": 0},
                "key_id": {"type": "string", "description": "first 8 bytes (hex) of SHA-256 of the public key"},
                "signature": {"type": "string", "description": "base64 Ed25519 signature of the head"},
                "last_notification_id": {"type": "integer", "description": "notification id of the last leaf"},
            },
        },
    }


def _stream_message(model: type[BaseModel], key: str, headers: dict[str, Any], shared: dict[str, Any]
                    ) -> dict[str, Any]:
    """A message of a stream topic (activity, trends): a versioned pydantic model that is no domain event."""
    name, version = getattr(model, "schema_name"), getattr(model, "schema_version")  # noqa: B009
    schema = json_schema(model)
    schema["x-schema-id"] = schema.pop("$id", None)
    return {
        "name": name,
        "title": f"{model.__name__} v{version}",
        "summary": (model.__doc__ or name).strip().splitlines()[0],
        "contentType": "application/json",
        "headers": {"type": "object", "required": sorted(headers), "properties": headers},
        "payload": _hoist_defs(schema, shared, name),
        "bindings": {"kafka": {"key": {"type": "string", "description": key},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _version_headers(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "schema_name": {"type": "string", "const": getattr(model, "schema_name")},  # noqa: B009
        "schema_version": {"type": "string", "const": str(getattr(model, "schema_version"))},  # noqa: B009
    }


def _stream_messages(shared: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """topic -> (message id, message) of the activity and trends topics."""
    activity = _stream_message(ActivityBatch, "the caller's actor (`user:<uuid>`, or the first event's "
                               "`session:<id>`): one client's batches stay in order", _version_headers(ActivityBatch),
                               shared)
    trend_headers = {
        **_version_headers(TrendWindow),
        "job": {"type": "string", "description": "the stream job that closed the window"},
        "revision": {"type": "string", "pattern": "^[0-9]+$", "description": "keep the highest per key"},
    }
    trends = _stream_message(TrendWindow, "the window's identity `window|scope|key|start`: the job may publish "
                             "a window again after a crash, identically; keep one per key and revision",
                             trend_headers, shared)
    return {
        names.topic(names.ACTIVITY_TOPIC): (f"{ActivityBatch.schema_name}.v{ActivityBatch.schema_version}", activity),
        names.topic(names.TRENDS_TOPIC): (f"{TrendWindow.schema_name}.v{TrendWindow.schema_version}", trends),
    }


def _channel(spec: ChannelSpec, messages: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"retention.ms": spec.retention_ms, "cleanup.policy": ["delete"]}
    if spec.retention_ms < 0:
        config["retention.bytes"] = -1
    return {
        "address": spec.name,
        "title": spec.name,
        "description": spec.description,
        "messages": messages,
        "bindings": {"kafka": {"topic": spec.name, "partitions": spec.partitions,
                               "topicConfiguration": config, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def asyncapi_document(
    topics: Sequence[ChannelSpec], server_host: str, registry: SchemaRegistry = REGISTRY
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the domain topics (every event schema version), checkpoints, activity, trends.

    `topics` (names, partitions, retention) come from the deployment's catalogue; `server_host` is the broker.
    """
    host = server_host
    shared: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    by_topic: dict[str, list[str]] = {}
    for model in registry.event_models(latest_only=False):
        messages[_message_id(model)] = _event_message(model, shared)
        by_topic.setdefault(names.domain_topic(model.aggregate), []).append(_message_id(model))
    messages["SignedTreeHead"] = _checkpoint_message()
    by_topic[names.topic(names.CHECKPOINTS_TOPIC)] = ["SignedTreeHead"]
    for topic, (message_id, message) in _stream_messages(shared).items():
        messages[message_id] = message
        by_topic[topic] = [message_id]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in topics:
        ids = by_topic.get(spec.name)
        if not ids:
            continue  # topics without a published schema (the DLQs) stay out
        channel_id = _channel_id(spec.name)
        channels[channel_id] = _channel(spec, {m: {"$ref": f"#/components/messages/{m}"} for m in ids})
        operations[f"consume{channel_id[0].upper()}{channel_id[1:]}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Read {spec.name} (from offset 0 to replay: retention is "
                       f"{'forever' if spec.retention_ms < 0 else str(spec.retention_ms) + ' ms'}).",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in ids],
        }
    components: dict[str, Any] = {"messages": messages}
    if shared:
        components["schemas"] = shared
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Bazaar domain events",
            "version": "1.0.0",
            "description": "Every state change of the Bazaar marketplace, as published by the relay from "
                           "the event store. Apply each event at most once per (aggregate_id, version): "
                           "after a crash the relay may publish an event again. Also the activity clients "
                           "post (bazaar.activity) and the trend windows the stream jobs close (bazaar.trends).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": host, "protocol": "kafka", "description": "The local broker started by ./run up.",
                      "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING_VERSION}}},
        },
        "channels": channels,
        "operations": operations,
        "components": components,
    }
