"""Export of JSON Schemas: pure functions, the CLI writes the files (the AsyncAPI writer is asyncapi_document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from schemas import names
from schemas.base import EventSchema
from schemas.registry import REGISTRY, SchemaRegistry


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of one model, with its name and version recorded."""
    schema = model.model_json_schema()
    name, version = getattr(model, "schema_name"), getattr(model, "schema_version")  # noqa: B009
    schema["$id"] = f"urn:bazaar:schema:{name}:v{version}"
    schema["x-schema-name"] = name
    schema["x-schema-version"] = version
    if issubclass(model, EventSchema):
        schema["x-event-type"] = model.event_type
        schema["x-topic"] = names.domain_topic(model.aggregate)
    return schema


def export_json_schemas(registry: SchemaRegistry = REGISTRY) -> dict[str, dict[str, Any]]:
    """Every schema version as {"events/<Name>.v<N>.json" | "commands/<Name>.v<N>.json": schema}."""
    files: dict[str, dict[str, Any]] = {}
    for model in registry.models():
        folder = "events" if issubclass(model, EventSchema) else "commands"
        name, version = getattr(model, "schema_name"), getattr(model, "schema_version")  # noqa: B009
        files[f"{folder}/{name}.v{version}.json"] = json_schema(model)
    return files
