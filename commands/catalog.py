"""For data teams: the topic catalogue, JSON Schemas of every event, and an AsyncAPI 3.0 document.

`bazaar topics`                  topics with partitions (catalogue and live), retention and event types
`bazaar schemas export DIR`      one JSON Schema file per event and command schema version
`bazaar schemas asyncapi`        the AsyncAPI 3.0.0 document (YAML) of every topic and event, to stdout

The AsyncAPI document lists every version of every event schema (a consumer reading from offset 0 meets
old versions; the `schema_version` header says which), the message headers and the Kafka bindings
(key = aggregate id, partitions, retention). Payloads are the pydantic JSON Schemas with their `$defs`
moved to `components.schemas`, so that every `$ref` resolves within the document.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from infra.settings import Settings, get_settings
from infra.topics import CATALOGUE, FOREVER, TopicSpec
from schemas.base import EventSchema
from schemas.export import export_json_schemas, json_schema
from schemas.registry import REGISTRY, SchemaRegistry

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
CHECKPOINTS_TOPIC = "bazaar.audit.checkpoints"
HASH_PATTERN = "^[0-9a-f]{64}$"

catalog_app = typer.Typer(help="Topics and schemas for data teams.", no_args_is_help=True)
schemas_app = typer.Typer(help="Published event schemas: JSON Schema files and AsyncAPI.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)


# --- topics ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicRow:
    """One line of `bazaar topics`."""

    spec: TopicSpec
    event_types: tuple[str, ...]
    live_partitions: int | None
    """Partitions on the broker; None when the topic is absent or the broker did not answer."""

    @property
    def retention(self) -> str:
        if self.spec.retention_ms == FOREVER:
            return "forever"
        days, rest = divmod(self.spec.retention_ms, 86_400_000)
        return f"{days} days" if not rest else f"{self.spec.retention_ms} ms"


def event_types_by_topic(registry: SchemaRegistry = REGISTRY) -> dict[str, list[str]]:
    """Event types (with their latest schema version) published to each domain topic."""
    found: dict[str, list[str]] = {}
    for model in registry.event_models():
        topic = f"bazaar.{model.aggregate}"
        found.setdefault(topic, []).append(f"{model.event_type} (v{model.schema_version})")
    return found


def live_partitions(settings: Settings, names: Iterable[str]) -> dict[str, int] | None:
    """Partition counts on the broker, or None when it cannot be reached quickly."""
    from infra.adapters.kafka import bootstrap_servers
    from infra.services.base import port_open

    servers = bootstrap_servers(settings)
    host, _, port = servers[0].rpartition(":") if servers else ("", "", "0")
    if not port.isdigit() or not port_open(host, int(port)):
        return None  # kafka-python would wait half a minute for a broker that is not there
    try:
        from kafka import KafkaConsumer

        # A bare consumer, not make_consumer: its debug log would land in `--json` output on stdout.
        consumer = KafkaConsumer(
            bootstrap_servers=servers, client_id="bazaar-catalog",
            request_timeout_ms=5_000,
        )
    except Exception:  # no broker is a normal answer for a catalogue listing
        return None
    try:
        existing = consumer.topics()
        return {name: len(consumer.partitions_for_topic(name) or ()) for name in names if name in existing}
    except Exception:
        return None
    finally:
        consumer.close()


def topic_rows(settings: Settings | None = None, *, live: bool = True) -> tuple[list[TopicRow], bool]:
    """(a row per catalogue topic, whether the broker answered)."""
    types = event_types_by_topic()
    partitions = live_partitions(settings or get_settings(), [s.name for s in CATALOGUE]) if live else None
    rows = [
        TopicRow(spec, tuple(types.get(spec.name, spec.event_types)),
                 partitions.get(spec.name) if partitions is not None else None)
        for spec in CATALOGUE
    ]
    return rows, partitions is not None


def topics(
    live: bool = typer.Option(True, "--live/--offline", help="Ask the broker for the partitions it has."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List Kafka topics with partitions, retention and the event types on each."""
    rows, answered = topic_rows(live=live)
    if as_json:
        typer.echo(json.dumps([_row_json(row) for row in rows], indent=2))
        return
    table = Table(title="Bazaar topics", show_lines=True)
    for column in ("topic", "partitions", "retention", "event types", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.spec.name, _partitions(row, answered), row.retention,
                      "\n".join(row.event_types) or "-", row.spec.description)
    console.print(table)
    if live and not answered:
        console.print("[yellow]the broker did not answer: partitions are the catalogue's[/]")


def _partitions(row: TopicRow, answered: bool) -> str:
    if not answered:
        return str(row.spec.partitions)
    if row.live_partitions is None:
        return f"{row.spec.partitions} (not created)"
    if row.live_partitions != row.spec.partitions:
        return f"{row.live_partitions} (catalogue: {row.spec.partitions})"
    return str(row.live_partitions)


def _row_json(row: TopicRow) -> dict[str, Any]:
    return {
        "topic": row.spec.name,
        "partitions": row.spec.partitions,
        "live_partitions": row.live_partitions,
        "retention_ms": row.spec.retention_ms,
        "event_types": list(row.event_types),
        "description": row.spec.description,
    }


# --- AsyncAPI -------------------------------------------------------------------------------------


def _channel_id(topic: str) -> str:
    """bazaar.audit.checkpoints -> auditCheckpoints."""
    parts = topic.removeprefix("bazaar.").split(".")
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


def _channel(spec: TopicSpec, messages: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"retention.ms": spec.retention_ms, "cleanup.policy": ["delete"]}
    if spec.retention_ms == FOREVER:
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
    settings: Settings | None = None, registry: SchemaRegistry = REGISTRY
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the domain topics (every event schema version) and checkpoints."""
    settings = settings or get_settings()
    host = settings.kafka_bootstrap.split(",")[0].strip()
    shared: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    by_topic: dict[str, list[str]] = {}
    for model in registry.event_models(latest_only=False):
        messages[_message_id(model)] = _event_message(model, shared)
        by_topic.setdefault(f"bazaar.{model.aggregate}", []).append(_message_id(model))
    messages["SignedTreeHead"] = _checkpoint_message()
    by_topic[CHECKPOINTS_TOPIC] = ["SignedTreeHead"]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in CATALOGUE:
        ids = by_topic.get(spec.name)
        if not ids:
            continue  # topics without a published schema (activity, trends, DLQs) stay out
        channel_id = _channel_id(spec.name)
        channels[channel_id] = _channel(spec, {m: {"$ref": f"#/components/messages/{m}"} for m in ids})
        operations[f"consume{channel_id[0].upper()}{channel_id[1:]}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Read {spec.name} (from offset 0 to replay: retention is "
                       f"{'forever' if spec.retention_ms == FOREVER else str(spec.retention_ms) + ' ms'}).",
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
                           "after a crash the relay may publish an event again.",
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


def asyncapi_yaml(settings: Settings | None = None) -> str:
    """The AsyncAPI document as YAML."""
    text: str = yaml.safe_dump(asyncapi_document(settings), sort_keys=False, allow_unicode=True, width=110)
    return text


@schemas_app.command("asyncapi")
def asyncapi_command() -> None:
    """Write the AsyncAPI 3.0.0 document (YAML) of every topic and event to stdout."""
    sys.stdout.write(asyncapi_yaml())


@schemas_app.command("export")
def export_command(directory: Path = typer.Argument(..., help="Where to write the JSON Schema files.")) -> None:  # noqa: B008
    """Write one JSON Schema file per event and command schema version (events/, commands/)."""
    files = export_json_schemas()
    for relative, schema in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    typer.echo(f"wrote {len(files)} schema files under {directory}")


catalog_app.command("topics")(topics)
catalog_app.add_typer(schemas_app, name="schemas")
