"""The data teams' CLI: the topic catalogue, JSON Schema files of every event, and the AsyncAPI document.

`bazaar topics`                  topics with partitions (catalogue and live), retention and event types
`bazaar schemas export DIR`      one JSON Schema file per event and command schema version
`bazaar schemas asyncapi`        the AsyncAPI 3.0.0 document (YAML) of every topic and event, to stdout

The document itself is written by `schemas.asyncapi_document` (pure); this module feeds it the catalogue.
"""

from __future__ import annotations

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
from schemas import names
from schemas.asyncapi_document import asyncapi_document
from schemas.export import export_json_schemas
from schemas.registry import REGISTRY, SchemaRegistry

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
        topic = names.domain_topic(model.aggregate)
        found.setdefault(topic, []).append(f"{model.event_type} (v{model.schema_version})")
    return found


def live_partitions(settings: Settings, topic_names: Iterable[str]) -> dict[str, int] | None:
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
        return {name: len(consumer.partitions_for_topic(name) or ()) for name in topic_names if name in existing}
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


def deployed_asyncapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The AsyncAPI document of this deployment's catalogue and broker."""
    settings = settings or get_settings()
    return asyncapi_document(CATALOGUE, settings.kafka_bootstrap.split(",")[0].strip())


def asyncapi_yaml(settings: Settings | None = None) -> str:
    """The AsyncAPI document as YAML."""
    text: str = yaml.safe_dump(deployed_asyncapi_document(settings), sort_keys=False, allow_unicode=True, width=110)
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
