"""The process table `./run up` starts from stays true to the code it runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.cli import LAYER_COMMANDS, app
from infra.processes import PlatformProcess, platform_processes
from infra.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SOURCES = [path for path in REPO.glob("*/**/*.py") if not path.parts[len(REPO.parts)].startswith((".", "tests"))]


def _processes() -> list[PlatformProcess]:
    return platform_processes(Settings())


@pytest.mark.parametrize("proc", [p for p in _processes() if p.ready_events], ids=lambda p: p.name)
def test_each_ready_event_is_logged_somewhere_in_the_code(proc: PlatformProcess) -> None:
    """A renamed log event would make `up` wait for it until the timeout: the names must exist."""
    for event in proc.ready_events:
        pattern = re.compile(rf"""["']{re.escape(event)}["']""")
        assert any(pattern.search(path.read_text()) for path in SOURCES), f"{proc.name}: no code logs {event!r}"


def test_every_process_without_a_port_has_a_ready_event() -> None:
    """Without a port or a ready event, a pid alive for a second would count as started."""
    for proc in _processes():
        assert proc.port is not None or proc.ready_events, proc.name


def test_every_process_runs_a_bazaar_sub_command() -> None:
    own = {command.name or command.callback.__name__.replace("_", "-") for command in app.registered_commands
           if command.callback is not None}
    for proc in _processes():
        assert proc.args[0] in own | set(LAYER_COMMANDS), f"{proc.name}: `bazaar {proc.args[0]}` does not exist"


def test_the_readme_lists_every_process_with_its_command_and_ready_events() -> None:
    readme = (REPO / "README.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| ")}
    for proc in _processes():
        assert proc.name in rows, f"README's process table lacks {proc.name}"
        assert f"`bazaar {' '.join(proc.args)}`" in rows[proc.name]
        for event in proc.ready_events:
            assert f"`{event}`" in rows[proc.name], f"README: {proc.name} is ready on {event}"
