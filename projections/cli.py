"""`bazaar projections status|rebuild NAME` and `run_projections`, the live Faust consumers until SIGTERM."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from infra.settings import Settings, get_settings
from projections.config import BATCH_SIZE, ProjectionConfig
from projections.rebuild import rebuild
from projections.registry import projection_names
from projections.status import status
from schemas.names import SEARCH_ALIAS as DEFAULT_ALIAS
from schemas.names import TOPIC_PREFIX

projections_app = typer.Typer(help="Read-model projections: status and zero-downtime rebuilds.",
                              no_args_is_help=True)
console = Console(stderr=True)


def run_projections(
    settings: Settings,
    *,
    topic_prefix: str = TOPIC_PREFIX,
    schema: str = "public",
    index_alias: str = DEFAULT_ALIAS,
    batch_size: int = BATCH_SIZE,
    names: tuple[str, ...] = (),
) -> None:
    """Run every live projection (one Faust agent each) until SIGTERM/SIGINT."""
    from projections.app import run_worker

    run_worker(ProjectionConfig(settings, topic_prefix, schema, index_alias, batch_size, names))


def _config(schema: str, topic_prefix: str, index_alias: str) -> ProjectionConfig:
    return ProjectionConfig(get_settings(), topic_prefix=topic_prefix, schema=schema, index_alias=index_alias)


@projections_app.command("status")
def status_command(
    schema: str = typer.Option("public", help="PostgreSQL schema of the read models."),
    topic_prefix: str = typer.Option(TOPIC_PREFIX, help="Prefix of the domain topics."),
    index_alias: str = typer.Option(DEFAULT_ALIAS, help="Search alias of the listing index."),
) -> None:
    """Per projection: position, lag in events and seconds, state."""
    table = Table(title="Bazaar projections")
    for column in ("projection", "state", "offsets", "last notification", "lag events", "lag s"):
        table.add_column(column)
    for row in status(_config(schema, topic_prefix, index_alias)):
        colour = {"live": "green", "rebuilding": "yellow"}.get(row.state, "red")
        offsets = " ".join(f"{tp}={o}" for tp, o in row.offsets.items())
        table.add_row(row.name, f"[{colour}]{row.state}[/]", offsets, str(row.last_notification_id),
                      str(row.lag_events), f"{row.lag_seconds:.1f}")
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@projections_app.command("rebuild")
def rebuild_command(
    name: str = typer.Argument(..., help=f"One of: {', '.join(projection_names())}."),
    schema: str = typer.Option("public"),
    topic_prefix: str = typer.Option(TOPIC_PREFIX),
    index_alias: str = typer.Option(DEFAULT_ALIAS),
) -> None:
    """Build NAME from offset 0 beside the live one, then swap it in atomically."""
    if name not in projection_names():
        raise typer.BadParameter(f"unknown projection {name!r}; known: {', '.join(projection_names())}")
    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[rate]} ev/s"),
                          TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"rebuild {name}", total=None, rate="-")

        def update(done: int, total: int) -> None:
            speed = progress.tasks[task].speed
            progress.update(task, completed=done, total=total, rate=f"{speed:,.0f}" if speed else "-")

        read = rebuild(_config(schema, topic_prefix, index_alias), name, progress=update)
    console.print(f"rebuilt {name}: {read} records, swapped in")
