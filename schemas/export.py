"""Export of JSON Schemas and an AsyncAPI document: pure functions, the CLI writes the files."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from schemas.base import EventSchema
from schemas.registry import REGISTRY, SchemaRegistry

TOPIC_PREFIX = "bazaar."


def topic_for(model: type[EventSchema]) -> str:
    """The Kafka topic an event schema is published to."""
    return f"{TOPIC_PREFIX}{model.aggregate}"


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of one model, with its name and version recorded."""
    schema = model.model_json_schema()
    name, version = getattr(model, "schema_name"), getattr(model, "schema_version")  # noqa: B009
    schema["$id"] = f"urn:bazaar:schema:{name}:v{version}"
    schema["x-schema-name"] = name
    schema["x-schema-version"] = version
    if issubclass(model, EventSchema):
        schema["x-event-type"] = model.event_type
        schema["x-topic"] = topic_for(model)
    return schema


def export_json_schemas(registry: SchemaRegistry = REGISTRY) -> dict[str, dict[str, Any]]:
    """Every schema version as {"events/<Name>.v<N>.json" | "commands/<Name>.v<N>.json": schema}."""
    files: dict[str, dict[str, Any]] = {}
    for model in registry.models():
        folder = "events" if issubclass(model, EventSchema) else "commands"
        name, version = getattr(model, "schema_name"), getattr(model, "schema_version")  # noqa: B009
        files[f"{folder}/{name}.v{version}.json"] = json_schema(model)
    return files


def asyncapi_document(registry: SchemaRegistry = REGISTRY) -> dict[str, Any]:
    """An AsyncAPI 3.0 document of the domain topics and the latest event schemas on each."""
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for model in registry.event_models():
        topic = topic_for(model)
        messages[model.schema_name] = {
            "name": model.schema_name,
            "title": model.event_type,
            "headers": {"type": "object", "properties": {
                "event_type": {"const": model.event_type},
                "schema_version": {"const": model.schema_version},
            }},
            "payload": json_schema(model),
        }
        channel = channels.setdefault(topic, {"address": topic, "messages": {}})
        channel["messages"][model.schema_name] = {"$ref": f"#/components/messages/{model.schema_name}"}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Bazaar domain events", "version": "1.0.0"},
        "channels": channels,
        "components": {"messages": messages},
    }
