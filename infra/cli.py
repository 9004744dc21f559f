"""`bazaar`: the one command-line entry point; each sub-command imports its layer lazily."""

from __future__ import annotations

import sys
import time

import typer
from rich.console import Console
from rich.table import Table

from infra.services.base import ServiceState
from infra.settings import get_settings

# Plain tracebacks off a terminal: a background process's log stays greppable, its last line the reason.
app = typer.Typer(help="Bazaar: event-sourced marketplace platform.", no_args_is_help=True,
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


def _mount_layers() -> None:
    """Sub-command groups of the layers (imported here: this module is the composition root)."""
    from commands.audit.cli import audit_app
    from infra.data_teams import schemas_app, topics
    from projections.cli import projections_app

    app.add_typer(projections_app, name="projections")
    app.add_typer(audit_app, name="audit")
    app.add_typer(schemas_app, name="schemas")
    app.command("topics")(topics)


def main() -> None:
    """Console-script entry point."""
    app()


_mount_layers()

if __name__ == "__main__":
    main()
