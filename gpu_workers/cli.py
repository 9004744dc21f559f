"""`bazaar workers enrich` and `bazaar models train-condition` (mounted lazily by infra/cli.py).

Only typer is imported here at start-up; torch and the model load inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from infra.settings import Settings, get_settings

workers_app = typer.Typer(help="Enrichment workers (torch: embeddings, condition and quality scores).",
                          no_args_is_help=True)
models_app = typer.Typer(help="The models the enrichment workers use.", no_args_is_help=True)
console = Console(stderr=True)


@workers_app.callback()
def _workers() -> None:
    """A group even with one command, so that `bazaar workers enrich` keeps its name."""


@models_app.callback()
def _models() -> None:
    """A group even with one command, so that `bazaar models train-condition` keeps its name."""


def ensure_service_account(settings: Settings) -> None:
    """Register the worker's admin account on the write side unless it can already log in.

    This is the composition-root part of the worker (like `bazaar create-admin`): the worker itself only
    talks to the command API over HTTP.
    """
    from commands.application import Marketplace
    from commands.handlers.users import register_user
    from gpu_workers.client import AuthenticationError, CommandClient
    from gpu_workers.runner import account_credentials, command_api_url
    from schemas.user import RegisterUser

    credentials = account_credentials(settings)
    client = CommandClient(command_api_url(settings), credentials, max_attempts=10)
    try:
        client.login()
        return
    except AuthenticationError:
        pass
    finally:
        client.close()
    marketplace = Marketplace(settings)
    try:
        cmd = RegisterUser(email=credentials.email, password=credentials.password, display_name="Enrichment worker")
        marketplace.run(lambda: register_user(marketplace, cmd, role="admin"))
    finally:
        marketplace.close()


@workers_app.command("enrich")
def enrich(
    device: str = typer.Option(None, help="auto | cpu | cuda (default BAZAAR_ENRICHMENT_DEVICE: auto)"),
) -> None:
    """Consume listing events and enrich them in batches until SIGTERM (CUDA fp16 when present, else CPU)."""
    from gpu_workers.runner import run_worker
    from infra.logging import configure_logging

    configure_logging()
    settings = get_settings()
    choice = device or settings.enrichment_device
    if choice not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter("choose auto, cpu or cuda", param_hint="--device")
    ensure_service_account(settings)
    run_worker(settings, choice)  # type: ignore[arg-type]


@models_app.command("train-condition")
def train_condition(
    seed: int = typer.Option(None, help="training seed (default: the one the shipped weights used)"),
    epochs: int = typer.Option(None, help="full-batch epochs"),
    out: Path = typer.Option(None, help="weights file (default gpu_workers/weights/condition_head-v1.safetensors)"),  # noqa: B008
) -> None:
    """Train the condition / quality head on the shipped labelled set, reproducibly, and report held-out accuracy."""
    from gpu_workers.condition import DEFAULT_EPOCHS, DEFAULT_SEED
    from gpu_workers.training import train_condition as train

    result = train(seed=DEFAULT_SEED if seed is None else seed, epochs=epochs or DEFAULT_EPOCHS, out=out,
                   console=console)
    held = result.held_out
    typer.echo(f"{result.version}  trained on {result.train_examples}, held out {held.examples}: "
               f"within one grade {held.within_one:.3f}, exact {held.exact:.3f}, quality MAE {held.quality_mae:.3f}")
    typer.echo(str(result.path))
