"""`bazaar` is the composition root: it mounts each layer's sub-commands only when one of them is asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli import LAYER_COMMANDS

REPO = Path(__file__).resolve().parents[2]
UPPER_LAYERS = ("commands", "projections", "read_api", "stream_jobs", "gpu_workers", "domain")


def _loaded_after(code: str) -> list[str]:
    """Upper-layer modules loaded in a fresh interpreter after running `code`."""
    probe = f"""
import contextlib, io, json, sys
{code}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {UPPER_LAYERS!r})))
"""
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_imports_no_layer() -> None:
    assert _loaded_after("import infra.cli") == []


def test_a_layer_is_imported_only_for_its_own_sub_command() -> None:
    code = """
from typer.testing import CliRunner
import infra.cli
result = CliRunner().invoke(infra.cli.app, ["audit", "--help"])
assert result.exit_code == 0, result.output
assert "verify" in result.output
"""
    loaded = _loaded_after(code)
    assert any(name.startswith("commands.audit") for name in loaded)
    assert not any(name.split(".")[0] in ("projections", "read_api", "stream_jobs") for name in loaded)


@pytest.mark.parametrize("name", sorted(LAYER_COMMANDS))
def test_every_layer_command_mounts(name: str) -> None:
    result = subprocess.run([sys.executable, "-m", "infra.cli", name, "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"bazaar {name}" in result.stdout or f"infra.cli {name}" in result.stdout
    assert "--install-completion" not in result.stdout  # completion is the root's option only
