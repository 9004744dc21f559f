"""`./run status` tells the truth: exit 0 with everything up, non-zero when one service is stopped."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra.services.redis import RedisService
from infra.settings import Settings
from tests.support import require_services

REPO = Path(__file__).resolve().parents[2]


def run_status() -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "run"), "status"], capture_output=True, text=True, timeout=120)


def test_status_exits_non_zero_when_a_service_is_stopped(settings: Settings) -> None:
    require_services(settings, "postgres", "redis", "kafka", "opensearch")
    assert run_status().returncode == 0
    redis = RedisService(settings)
    redis.stop()
    try:
        stopped = run_status()
        assert stopped.returncode != 0
        assert "redis" in stopped.stdout + stopped.stderr
    finally:
        redis.start()
    assert run_status().returncode == 0
