"""`bazaar up` exits non-zero, printing the process's own reason, when a platform process refuses to start.

The platform runs against its own database (the shared services, `BAZAAR_MANAGE_SERVICES=false`) whose
relay position says three events were published while the store holds none: the relay refuses a store
that was rewritten, before it logs `relay.recovered`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from commands.relay import POSITIONS_DDL, POSITIONS_TABLE
from infra.processes import platform_processes, process_state, stop_process
from infra.settings import Settings
from schemas.names import RELAY_NAME
from tests.support import free_port, require_services

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rewritten_store(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings of a fresh database whose relay recorded a tree of 3 events over an empty store."""
    require_services(settings, "postgres", "kafka")
    dbname = f"bazaar_up_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    isolated = settings.model_copy(update={
        "home": tmp_path / "home", "manage_services": False, "pg_dbname": dbname,
        "command_api_port": free_port(), "read_api_port": free_port(),
    })
    with psycopg.connect(isolated.pg_conninfo, autocommit=True) as conn:
        conn.execute(POSITIONS_DDL)
        conn.execute(f"INSERT INTO {POSITIONS_TABLE} (name, notification_id, tree_size) VALUES (%s, 5, 3)",
                     (RELAY_NAME,))
    try:
        yield isolated
    finally:
        for proc in platform_processes(isolated):
            stop_process(isolated, proc)
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def _env(settings: Settings) -> dict[str, str]:
    overrides = {
        "BAZAAR_HOME": str(settings.home),
        "BAZAAR_MANAGE_SERVICES": "false",
        "BAZAAR_PG_DBNAME": settings.pg_dbname,
        "BAZAAR_COMMAND_API_PORT": str(settings.command_api_port),
        "BAZAAR_READ_API_PORT": str(settings.read_api_port),
    }
    return {**os.environ, **overrides}


def test_up_exits_non_zero_with_the_relays_own_reason(rewritten_store: Settings) -> None:
    result = subprocess.run([sys.executable, "-m", "infra.cli", "up"], cwd=REPO, env=_env(rewritten_store),
                            capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr

    assert result.returncode == 1, out
    assert "relay failed to start: process exited during start-up" in out
    assert "the relay recorded 3: the log was rewritten" in out  # the relay's own words, from its log
    states = [(proc.name, process_state(rewritten_store, proc).state) for proc in platform_processes(rewritten_store)]
    names = [name for name, _ in states]
    assert states[: names.index("relay")] == [("command-api", "up")]  # started before the relay, and kept
    assert all(state == "down" for _, state in states[names.index("relay"):]), states  # none started after it
