"""Shared fixtures."""

from __future__ import annotations

import pytest

from infra.settings import Settings, get_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()
