"""`bazaar`: the one command-line entry point, and the composition root: each sub-command imports its layer lazily."""

from __future__ import annotations

import importlib
import sys
import time

import typer
from rich.console import Console
from rich.table import Table

# Typer 0.2x vendors click: a TyperGroup takes and returns its Context and Command, not the click package's.
from typer import _click
from typer.core import TyperGroup

from infra.services.base import ServiceState
from infra.settings import get_settings

# Sub-commands that live in a layer: (module, attribute), imported only when that sub-command runs (or
# `--help` lists it), so `bazaar up` or `bazaar relay` never imports the other layers.
LAYER_COMMANDS: dict[str, tuple[str, str]] = {
    "projections": ("projections.cli", "projections_app"),
    "audit": ("commands.audit.cli", "audit_app"),
    "schemas": ("infra.data_teams", "schemas_app"),
    "topics": ("infra.data_teams", "topics"),
    "jobs": ("stream_jobs.cli", "jobs_app"),
    "simulate": ("stream_jobs.simulate", "simulate"),
    "workers": ("gpu_workers.cli", "workers_app"),
    "models": ("gpu_workers.cli", "models_app"),
}


COMPLETION_OPTIONS = ("install_completion", "show_completion")


class LayerGroup(TyperGroup):
    """The `bazaar` group: its own commands plus the layers' ones, each mounted when first asked for."""

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAYER_COMMANDS})

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name not in LAYER_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = LAYER_COMMANDS[cmd_name]
        target = getattr(importlib.import_module(module), attribute)
        if not isinstance(target, typer.Typer):  # a plain command function
            function, target = target, typer.Typer()
            target.command(cmd_name)(function)
        command = typer.main.get_command(target)
        command.name = cmd_name
        # Shell completion is the root's option, as it was when the layers were mounted with add_typer.
        command.params = [param for param in command.params if param.name not in COMPLETION_OPTIONS]
        return command


# Plain tracebacks off a terminal: a background process's log stays greppable, its last line the reason.
app = typer.Typer(cls=LayerGroup, help="Bazaar: event-sourced marketplace platform.", no_args_is_help=True,
                  pretty_exceptions_enable=sys.stderr.isatty())
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def _state_table(rows: list[ServiceState]) -> Table:
    table = Table(title="Bazaar services")
    for column in ("service", "address", "version", "state", "log"):
        table.add_column(column)
    for row in rows:
        colour = "green" if row.up else "red"
        table.add_row(row.name, row.address, row.version, f"[{colour}]{row.state}[/]", str(row.log_file or ""))
    return table


def _all_states() -> list[ServiceState]:
    from infra.processes import platform_processes, process_state
    from infra.services.registry import local_services, states

    settings = get_settings()
    rows = states(local_services(settings)) if settings.manage_services else []
    return rows + [process_state(settings, proc) for proc in platform_processes(settings)]


@app.command()
def up(services_only: bool = typer.Option(False, help="Start the stores but no platform process.")) -> None:
    """Install what is missing, start every service and platform process, print their state."""
    from infra.adapters.kafka import ensure_topics
    from infra.processes import platform_processes, start_process
    from infra.services.base import ServiceStartError
    from infra.services.registry import install_all, local_services, start_all

    settings = get_settings()
    began = time.monotonic()
    if settings.manage_services:
        services = local_services(settings)
        with console.status("installing services") as status:
            install_all(services, lambda step: status.update(step))
        with console.status("starting PostgreSQL, Redis, Kafka, OpenSearch"):
            errors = start_all(services)
        for error in errors:
            console.print(f"[red]{error}[/]")
        if errors:
            raise typer.Exit(1)
    ensure_topics(settings)
    if not services_only:
        for proc in platform_processes(settings):
            try:
                with console.status(f"starting {proc.name}"):
                    start_process(settings, proc)
            except ServiceStartError as error:
                console.print(f"[red]{error}[/]")
                raise typer.Exit(1) from error
    console.print(_state_table(_all_states()))
    console.print(f"up in {time.monotonic() - began:.1f}s")


@app.command()
def down() -> None:
    """Stop the platform processes, then the services."""
    from infra.processes import platform_processes, stop_process
    from infra.services.registry import local_services, stop_all

    settings = get_settings()
    for proc in reversed(platform_processes(settings)):
        stop_process(settings, proc)
    if settings.manage_services:
        stop_all(local_services(settings))
    console.print("stopped")


@app.command()
def status() -> None:
    """Show every service and process; exit 1 when any is down."""
    rows = _all_states()
    console.print(_state_table(rows))
    if not all(row.up for row in rows):
        raise typer.Exit(1)


@app.command("serve-commands")
def serve_commands(port: int = typer.Option(None, help="defaults to BAZAAR_COMMAND_API_PORT")) -> None:
    """Run the command HTTP API (FastAPI) on 127.0.0.1."""
    import uvicorn

    from commands.api import create_app
    from infra.logging import configure_logging

    settings = get_settings()
    configure_logging()
    uvicorn.run(create_app(settings), host=settings.bind_host, port=port or settings.command_api_port,
                log_level="warning", access_log=False)


@app.command()
def relay() -> None:
    """Relay the event store's notification log to Kafka and sign tree heads, until SIGTERM."""
    from commands.relay import run_relay
    from infra.logging import configure_logging

    configure_logging()
    run_relay(get_settings())


@app.command("serve-reads")
def serve_reads(port: int = typer.Option(None, help="defaults to BAZAAR_READ_API_PORT")) -> None:
    """Run the read HTTP API (FastAPI) on 127.0.0.1; `?after=` learns each projection's topics from here."""
    from infra.logging import configure_logging
    from projections.registry import projection_topics
    from read_api.serve import serve

    configure_logging()
    serve(get_settings(), projection_topics(), port=port)


@app.command("serve-projections")
def serve_projections() -> None:
    """Run every projection's live consumer (Faust agents) until SIGTERM."""
    from infra.logging import configure_logging
    from projections.cli import run_projections

    configure_logging()
    run_projections(get_settings())


@app.command("create-admin")
def create_admin(
    email: str = typer.Option(...), password: str = typer.Option(...), name: str = typer.Option("Admin")
) -> None:
    """Register an admin account directly on the write side (the API only registers buyers and sellers)."""
    from commands.application import Marketplace
    from commands.handlers.users import register_user
    from domain.errors import DomainError
    from schemas.user import RegisterUser

    marketplace = Marketplace(get_settings())
    try:
        cmd = RegisterUser(email=email, password=password, display_name=name)
        result = marketplace.run(lambda: register_user(marketplace, cmd, role="admin"))
    except DomainError as error:
        console.print(f"[red]{error.code}: {error}[/]")
        raise typer.Exit(1) from error
    finally:
        marketplace.close()
    typer.echo(result.aggregate_id)


@app.command()
def demo() -> None:
    """The marketplace end to end over the running platform (start it with ./run up)."""
    from infra.demo import DemoFailed, run_demo
    from infra.logging import configure_logging

    configure_logging("WARNING")
    try:
        run_demo(get_settings(), Console(width=140))
    except DemoFailed as error:
        console.print(f"[red]demo failed: {error}[/]")
        raise typer.Exit(1) from error


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
