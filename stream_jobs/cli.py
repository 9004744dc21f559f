"""`bazaar jobs`: run a stream job in the foreground, or show every job's lag and counters."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from infra.settings import get_settings
from schemas import names

jobs_app = typer.Typer(help="Stream jobs (trends): run one, or show their state.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)
JOBS = ("trends",)


@jobs_app.command("run")
def run_command(
    name: str = typer.Argument("trends", help="the job: trends"),
    topic_prefix: str = typer.Option(names.TOPIC_PREFIX, help="read <prefix>activity, write <prefix>trends"),
    redis_prefix: str = typer.Option("", help="prefix of every Redis key the job reads and writes"),
    max_poll_records: int = typer.Option(None, help="records per step (default BAZAAR_TRENDS_MAX_POLL_RECORDS)"),
    idle_partition_s: float = typer.Option(None, help="default BAZAAR_TRENDS_IDLE_PARTITION_S"),
) -> None:
    """Run one stream job until SIGTERM (`bazaar up` starts it in the background)."""
    from infra.logging import configure_logging
    from stream_jobs.trend_job import TrendJobConfig, run_trend_job

    if name not in JOBS:
        raise typer.BadParameter(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    configure_logging()
    settings = get_settings()
    overrides: dict[str, object] = {"topic_prefix": topic_prefix, "redis_prefix": redis_prefix}
    if max_poll_records is not None:
        overrides["max_poll_records"] = max_poll_records
    if idle_partition_s is not None:
        overrides["idle_partition_s"] = idle_partition_s
    run_trend_job(settings, TrendJobConfig.from_settings(settings, **overrides))


@jobs_app.command("status")
def status_command(
    topic_prefix: str = typer.Option(names.TOPIC_PREFIX, help="the job reads <prefix>activity"),
    redis_prefix: str = typer.Option("", help="the job's Redis key prefix"),
) -> None:
    """Per job: input lag, events, late events (counted, dropped), windows closed, watermark, last output."""
    from infra.logging import configure_logging
    from stream_jobs.status import job_status
    from stream_jobs.trend_job import TrendJobConfig

    configure_logging("WARNING")
    settings = get_settings()
    config = TrendJobConfig.from_settings(settings, topic_prefix=topic_prefix, redis_prefix=redis_prefix)
    row = job_status(settings, config)
    table = Table(title="Bazaar stream jobs")
    for column in ("job", "input", "input lag", "events", "late counted", "late dropped", "undecodable",
                   "windows closed", "watermark", "last output"):
        table.add_column(column)
    table.add_row(row.name, row.input_topic, "?" if row.input_lag is None else str(row.input_lag), str(row.events),
                  str(row.late_accepted), str(row.late_dropped), str(row.undecodable), str(row.windows_closed),
                  _time(row.watermark), _time(row.last_output))
    console.print(table)


def _time(moment: object) -> str:
    return "-" if moment is None else str(moment)
