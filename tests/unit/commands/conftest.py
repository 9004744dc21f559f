"""Fixtures of the command handler tests: a Marketplace on eventsourcing's in-memory store, no services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles

from commands import auth
from commands.application import Marketplace
from infra.settings import Settings
from tests.unit.commands.support import Clock, World


@pytest.fixture(scope="session")
def memory_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The in-memory event store, with the e-mail pepper generated under a temporary home."""
    home: Path = tmp_path_factory.mktemp("bazaar-home")
    return settings.model_copy(update={"event_store": "memory", "home": home})


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its cheapest parameters: the production cost (~0.5 s a hash here) would dominate the tier."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(memory_settings: Settings, clock: Clock) -> Iterator[Marketplace]:
    marketplace = Marketplace(memory_settings, clock=clock)
    yield marketplace
    marketplace.close()


@pytest.fixture
def world(app: Marketplace, clock: Clock) -> World:
    return World(app, clock)
