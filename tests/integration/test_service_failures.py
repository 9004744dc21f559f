"""A service that cannot start says which one failed and which log file to read."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.services.base import ServiceStartError
from infra.services.redis import RedisService
from infra.settings import Settings
from tests.support import require_services


def test_redis_on_a_taken_port_names_itself_and_its_log(settings: Settings, tmp_path: Path) -> None:
    require_services(settings, "postgres")
    clashing = Settings(home=tmp_path / "home", redis_port=settings.pg_port)

    with pytest.raises(ServiceStartError) as failure:
        RedisService(clashing).start()

    message = str(failure.value)
    assert failure.value.service == "redis"
    assert "redis" in message and str(clashing.log_dir / "redis.log") in message
