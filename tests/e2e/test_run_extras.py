"""`./run` picks its pip extras from the same BAZAAR_* variables the settings read, and refuses unknown values."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_extras(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("BAZAAR_")}
    return subprocess.run([str(REPO / "run"), "extras"], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(
    ("env", "extras"),
    [
        ({}, "dev,streams,gpu,opensearch,local"),
        ({"BAZAAR_SEARCH_FLAVOUR": "elasticsearch"}, "dev,streams,gpu,elasticsearch,local"),
        ({"BAZAAR_MANAGE_SERVICES": "False"}, "dev,streams,gpu,opensearch"),
        ({"BAZAAR_MANAGE_SERVICES": "0", "BAZAAR_EXTRAS": "streams"}, "streams,opensearch"),
        ({"BAZAAR_MANAGE_SERVICES": "yes", "BAZAAR_EXTRAS": "dev"}, "dev,opensearch,local"),
    ],
)
def test_extras_follow_the_flavour_and_whether_services_are_managed(env: dict[str, str], extras: str) -> None:
    result = run_extras(**env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == extras


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BAZAAR_SEARCH_FLAVOUR": "solr"}, "BAZAAR_SEARCH_FLAVOUR must be opensearch or elasticsearch, not 'solr'"),
        ({"BAZAAR_MANAGE_SERVICES": "maybe"}, "BAZAAR_MANAGE_SERVICES must be true or false, not 'maybe'"),
    ],
)
def test_an_unknown_value_stops_run_before_anything_is_installed(env: dict[str, str], message: str) -> None:
    result = run_extras(**env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
