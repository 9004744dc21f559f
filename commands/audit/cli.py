"""`bazaar audit ...`: the auditors' command line (mounted by infra/cli.py as a Typer sub-app).
(Over 400 lines: one short Typer command per auditor task, with their shared options and printers.)

verify [--from-kafka|--from-store]    hash chains and signed heads; exit 0 only when all holds
       [--trusted-heads PATH] [--cross-check] [--allow-unsigned-tail] [--no-checkpoints]
prove EVENT [-o FILE]                 inclusion proof of one event (notification id or AGGREGATE_ID:VERSION)
consistency OLD NEW [-o FILE]         consistency proof between two tree sizes
check-proof FILE --head HEAD --public-key KEY [--event EVENT] [--earlier-head HEAD]
                                      checks a proof with the proof, the kept head and the key alone
replay [--from-kafka|--from-store]    rebuild every aggregate from the log and compare with the store
public-key [--pem]                    the key that signs tree heads
heads                                 the stored signed tree heads
witness --url URL --dir PATH          keep the platform's signed heads, each proven to extend the last
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from commands.audit.merkle import AuditError
from commands.audit.signing import key_id, load_public_key, public_key_to_b64, public_key_to_pem
from commands.store import EVENTS_TABLE
from infra.settings import get_settings
from schemas.messages import TOPIC_PREFIX

audit_app = typer.Typer(
    help="Auditors' tools: verify the event log, prove events are in it, replay every aggregate.",
    no_args_is_help=True,
)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out = Console(width=None if sys.stdout.isatty() else 140)

FromKafka = typer.Option(False, "--from-kafka/--from-store", help="Read the published topics, or the store.")
Schema = typer.Option("public", "--schema", help="PostgreSQL schema of the log.", hidden=True)
EventsTable = typer.Option(EVENTS_TABLE, "--events-table", help="The events table.", hidden=True)
TopicPrefix = typer.Option(TOPIC_PREFIX, "--topic-prefix", help="Prefix of the Kafka topics.")
AsJson = typer.Option(False, "--json", help="Print the report as JSON.")
Output = typer.Option(None, "-o", "--output", help="Write the JSON here (default: stdout).")
ProofFile = typer.Argument(..., help="The proof JSON (from prove or consistency).")
KeptHead = typer.Option(..., "--head", help="The signed tree head the auditor kept (JSON).")
HeldEvent = typer.Option(None, "--event", help="Inclusion: the event held (JSON), to rebuild its leaf.")
EarlierHead = typer.Option(None, "--earlier-head", help="Consistency: the older head kept (JSON).")
TrustedHeads = typer.Option(
    None, "--trusted-heads", exists=True, help="Signed heads the auditor kept: a JSON file or a folder of them."
)
WitnessDir = typer.Option(..., "--dir", help="Where the kept heads and the pinned key live.")
TokenFile = typer.Option(None, "--token-file", exists=True, help="An auditor's bearer token, in a file.")
SHOWN = 20


class RateColumn(ProgressColumn):
    """Items per second (events unless the task says otherwise in its `unit` field)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "events")
        return Text(f"{speed:,.0f} {unit}/s" if speed else f"… {unit}/s", style="progress.data.speed")


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A progress display on stderr with count, rate, elapsed time and ETA."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        yield progress


def _source(schema: str, events_table: str) -> Any:
    from commands.audit.source import LogSource

    try:
        return LogSource(get_settings(), schema, events_table)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def platform_public_key(value: str | None) -> Ed25519PublicKey:
    """The key given (file, PEM or base64), else the platform's own public key."""
    from commands.audit.keys import public_key
    from commands.audit.prove import public_key_text

    if value:
        try:
            return load_public_key(public_key_text(value).strip())
        except AuditError as exc:
            raise typer.BadParameter(f"--public-key: {exc}") from exc
    settings = get_settings()
    published = settings.secrets_dir / "audit_ed25519.pub"
    if published.is_file():
        return load_public_key(published.read_text().strip())
    return public_key(settings)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]{message}[/]")
    return typer.Exit(code)


# --- verify -------------------------------------------------------------------------------------


@audit_app.command()
def verify(
    from_kafka: bool = FromKafka,
    public_key: str | None = typer.Option(None, "--public-key", help="File, PEM or base64 (default: ours)."),
    trusted_heads: Path | None = TrustedHeads,
    checkpoints: bool = typer.Option(
        True, "--checkpoints/--no-checkpoints", help="Compare the store's heads with the checkpoints topic."
    ),
    cross_check: bool = typer.Option(False, "--cross-check", help="Compare the store's events with Kafka's."),
    allow_unsigned_tail: bool = typer.Option(
        False, "--allow-unsigned-tail", help="Accept events that no signed head covers yet, however old."
    ),
    topic_prefix: str = TopicPrefix,
    as_json: bool = AsJson,
    schema: str = Schema,
    events_table: str = EventsTable,
) -> None:
    """Check every hash chain and signed head (and the auditor's kept heads); exit 0 only when all holds."""
    from commands.audit.kafka_source import verify_kafka

    key = platform_public_key(public_key)
    source = _source(schema, events_table)
    with progress_bar() as progress:
        if from_kafka:
            task = progress.add_task("verify kafka", total=None)
            report = verify_kafka(
                source.settings, key, topic_prefix=topic_prefix,
                on_progress=lambda n: progress.advance(task, n),
                on_total=lambda total: progress.update(task, total=total),
            )
        else:
            evidence = _evidence(source, trusted_heads, checkpoints, cross_check, allow_unsigned_tail, topic_prefix)
            task = progress.add_task("verify store", total=source.count())
            report = _verify_store(source, key, evidence, lambda n: progress.advance(task, n))
    _finish(report, as_json, _print_verify)


def _evidence(
    source: Any, trusted_heads: Path | None, checkpoints: bool, cross_check: bool, allow_unsigned_tail: bool,
    topic_prefix: str,
) -> Any:
    """What the store is compared with: kept heads, the checkpoints topic, Kafka's events."""
    from commands.audit.headcheck import load_trusted_heads
    from commands.audit.kafka_source import published_leaves, read_checkpoints
    from commands.audit.verify import Evidence

    try:
        trusted = load_trusted_heads(trusted_heads) if trusted_heads else []
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"--trusted-heads: {exc}") from exc
    try:
        published = read_checkpoints(source.settings, topic_prefix) if checkpoints else None
        leaves = published_leaves(source.settings, topic_prefix) if cross_check else None
    except Exception as exc:  # noqa: BLE001 - Kafka unreachable: say so rather than verify less than asked
        raise _fail(f"cannot read Kafka ({exc!r}); --no-checkpoints skips the checkpoints topic") from exc
    max_age = None if allow_unsigned_tail else Evidence.max_unsigned_age_s
    return Evidence(trusted=trusted, published=published, kafka_leaves=leaves, max_unsigned_age_s=max_age)


def _verify_store(source: Any, key: Ed25519PublicKey, evidence: Any, advance: Callable[[int], None]) -> Any:
    from commands.audit.verify import verify_store

    return verify_store(source, key, evidence=evidence, on_progress=advance)


def _finish(report: Any, as_json: bool, printer: Callable[[Any], None]) -> None:
    """Print a report (JSON or text) and exit 0 only when everything held."""
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=str))
    else:
        printer(report)
    raise typer.Exit(0 if report.ok else 1)


def _print_verify(report: Any) -> None:
    out.print(
        f"audit verify ({report.source}): {report.events:,} events, {report.aggregates:,} aggregates, "
        f"{report.heads} signed heads (latest size {report.latest_head_size:,}), key {report.key_id}, "
        f"{report.seconds:.1f}s ({report.rate:,.0f} events/s)"
    )
    if report.source == "kafka":
        out.print(
            f"  {report.duplicates_skipped:,} re-sent duplicates dropped; {report.unverifiable:,} events "
            "unverifiable on Kafka (redacted fields: their event_hash header is covered by the heads)"
        )
    if report.trusted_heads:
        out.print(f"  checked against {report.trusted_heads} head(s) the auditor kept")
    if report.unsigned_tail:
        accepted = " (accepted: --allow-unsigned-tail)" if report.unsigned_tail_accepted else ""
        out.print(f"  {report.unsigned_tail:,} events after the latest signed head are under no signed head{accepted}")
    if report.ok:
        heads = "every signed head matches the log" if report.heads else "no signed head to check yet"
        out.print(f"[green]OK[/]: every hash chain holds and {heads}")
        return
    out.print(f"[red]FAILED[/]: {len(report.problems)} problem(s); the first:")
    out.print(f"  [bold]{report.first.describe()}[/]", highlight=False)
    for problem in report.problems[1:SHOWN]:
        out.print(f"  {problem.describe()}", highlight=False)
    if len(report.problems) > SHOWN:
        out.print(f"  … and {len(report.problems) - SHOWN} more")


# --- proofs -------------------------------------------------------------------------------------


def _write_json(doc: dict[str, Any], output: Path | None) -> None:
    text = json.dumps(doc, indent=2, sort_keys=False)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n")
        err.print(f"wrote {output}")


@audit_app.command()
def prove(
    event: str = typer.Argument(..., help="Notification id, or AGGREGATE_ID:VERSION."),
    output: Path | None = Output,
    head_size: int | None = typer.Option(None, "--head-size", help="Prove against this head (default: latest)."),
    schema: str = Schema,
    events_table: str = EventsTable,
) -> None:
    """Write an inclusion proof of one event against a signed tree head, as JSON."""
    from commands.audit.prove import inclusion_proof

    source = _source(schema, events_table)
    try:
        doc = inclusion_proof(source, event, head_size=head_size)
    except AuditError as exc:
        raise _fail(str(exc)) from exc
    _write_json(doc, output)


@audit_app.command()
def consistency(
    old: int = typer.Argument(..., help="The earlier tree size (a head the auditor kept)."),
    new: int = typer.Argument(..., help="The later tree size."),
    output: Path | None = Output,
    schema: str = Schema,
    events_table: str = EventsTable,
) -> None:
    """Write a consistency proof that the log at OLD is a prefix of the log at NEW, as JSON."""
    from commands.audit.prove import consistency_proof

    source = _source(schema, events_table)
    try:
        doc = consistency_proof(source, old, new)
    except (AuditError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    _write_json(doc, output)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"{what}: {exc}") from exc


@audit_app.command("check-proof")
def check_proof_command(
    proof_file: Path = ProofFile,
    head: Path = KeptHead,
    public_key: str = typer.Option(..., "--public-key", help="The platform's public key: file, PEM or base64."),
    event: Path | None = HeldEvent,
    earlier_head: Path | None = EarlierHead,
) -> None:
    """Check a proof with the proof, a kept head and the public key alone; exit 0 only when it holds."""
    from commands.audit.prove import check_proof, public_key_text

    proof = _read_json(proof_file, "proof")
    kept = _read_json(head, "--head")
    held = _read_json(event, "--event") if event else None
    if isinstance(held, dict) and isinstance(held.get("event"), dict):
        held = held["event"]  # a whole proof document was given: take the event in it
    earlier = _read_json(earlier_head, "--earlier-head") if earlier_head else None
    try:
        summary = check_proof(proof, kept, public_key_text(public_key), event=held, earlier_head=earlier)
    except AuditError as exc:
        out.print(f"[red]proof REJECTED[/]: {exc}")
        raise typer.Exit(1) from exc
    out.print(f"[green]{summary}[/]")


# --- replay -------------------------------------------------------------------------------------


@audit_app.command()
def replay(
    from_kafka: bool = FromKafka,
    topic_prefix: str = TopicPrefix,
    as_json: bool = AsJson,
    schema: str = Schema,
    events_table: str = EventsTable,
) -> None:
    """Rebuild every aggregate from the log alone and compare it with the store; exit 1 on differences."""
    from commands.audit.replay import replay_kafka, replay_store

    source = _source(schema, events_table)
    with progress_bar() as progress:
        rebuild = progress.add_task("rebuild", total=None if from_kafka else source.count())
        compare = progress.add_task("compare", total=None, start=False, unit="aggregates")

        def compared(n: int, total: int) -> None:
            progress.start_task(compare)
            progress.update(compare, total=total, advance=n)

        advance: Callable[[int], None] = lambda n: progress.advance(rebuild, n)  # noqa: E731
        if from_kafka:
            report = replay_kafka(
                source, topic_prefix=topic_prefix, on_progress=advance,
                on_total=lambda total: progress.update(rebuild, total=total), on_compare=compared,
            )
        else:
            report = replay_store(source, on_progress=advance, on_compare=compared)
    _finish(report, as_json, _print_replay)


def _print_replay(report: Any) -> None:
    out.print(
        f"audit replay ({report.source}): {report.events:,} events rebuilt {report.aggregates:,} aggregates in "
        f"{report.rebuild_seconds:.1f}s ({report.rebuild_rate:,.0f} events/s); compared with the store in "
        f"{report.compare_seconds:.1f}s; {report.rate:,.0f} events/s overall"
    )
    if report.source == "kafka":
        out.print(
            f"  {report.duplicates_skipped:,} re-sent duplicates dropped; {report.redacted:,} events with "
            f"redacted fields (not compared); {report.store_ahead:,} aggregates newer in the store "
            f"(compared at Kafka's version); {report.not_published:,} not published yet"
        )
    if report.ok:
        out.print("[green]OK[/]: every aggregate rebuilt from the log equals the store's")
        return
    out.print(f"[red]DIFFERENCES[/]: {len(report.differences)}")
    for difference in report.differences[:SHOWN]:
        out.print(f"  {difference.describe()}", highlight=False)
    if len(report.differences) > SHOWN:
        out.print(f"  … and {len(report.differences) - SHOWN} more")


# --- witness -----------------------------------------------------------------------------------


@audit_app.command()
def witness(
    url: str = typer.Option(..., "--url", help="The command API, e.g. http://127.0.0.1:8000"),
    folder: Path = WitnessDir,
    token_file: Path | None = TokenFile,
    public_key: str | None = typer.Option(None, "--public-key", help="Pin this key on the first run."),
) -> None:
    """Keep the platform's signed heads, each proven consistent with the last; exit 1 when one is not."""
    import httpx

    from commands.audit.witness import PlatformUnavailable, WitnessRefusal, api_base, run_witness

    key = platform_key_option(public_key)
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"} if token_file else {}
    try:
        with httpx.Client(base_url=api_base(url), headers=headers, timeout=30.0) as client:
            run = run_witness(client, folder, key)
    except WitnessRefusal as exc:
        out.print(f"[red]REFUSED[/]: {exc}", highlight=False)
        raise typer.Exit(1) from exc
    except PlatformUnavailable as exc:
        raise _fail(str(exc)) from exc
    pinned = " (public key pinned on this first run)" if run.key_pinned else ""
    out.print(f"[green]OK[/]: kept {len(run.kept)} new head(s); the newest kept is size {run.latest:,}{pinned}")


def platform_key_option(value: str | None) -> Ed25519PublicKey | None:
    """A --public-key given on the command line (file, PEM or base64), or None."""
    return platform_public_key(value) if value else None


# --- keys and heads ----------------------------------------------------------------------------


@audit_app.command("public-key")
def public_key_command(pem: bool = typer.Option(False, "--pem", help="PEM instead of base64.")) -> None:
    """Print the platform's tree-head public key (what auditors check heads with)."""
    key = platform_public_key(None)
    typer.echo(public_key_to_pem(key).decode().strip() if pem else public_key_to_b64(key))
    err.print(f"key id {key_id(key)}")


@audit_app.command()
def heads(
    as_json: bool = AsJson,
    public_key: str | None = typer.Option(None, "--public-key", help="File, PEM or base64 (default: ours)."),
    schema: str = Schema,
    events_table: str = EventsTable,
) -> None:
    """List the stored signed tree heads, with whether each signature checks."""
    from commands.audit.headcheck import read_heads
    from commands.audit.prove import head_document
    from commands.audit.signing import verify_tree_head

    key = platform_public_key(public_key)
    stored = read_heads(_source(schema, events_table))
    if as_json:
        docs = [head_document(h) if h.signed else {"tree_size": h.tree_size, "error": h.error} for h in stored]
        typer.echo(json.dumps(docs, indent=2))
        return
    table = Table(title=f"signed tree heads ({len(stored)})")
    for column in ("size", "last notification", "signed at (UTC)", "root (base64)", "key", "signature"):
        table.add_column(column)
    for head in stored:
        if head.signed is None:
            table.add_row(str(head.tree_size), str(head.last_notification_id), "", "", "", f"[red]{head.error}[/]")
            continue
        try:
            verify_tree_head(key, head.signed)
            status = "[green]ok[/]"
        except AuditError as exc:
            status = f"[red]{exc}[/]"
        signed_at = datetime.fromtimestamp(head.signed.head.timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(f"{head.tree_size:,}", str(head.last_notification_id), signed_at,
                      head.signed.head.root_hash_b64, head.signed.head.key_id, status)
    out.print(table)


if __name__ == "__main__":
    audit_app()
