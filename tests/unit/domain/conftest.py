"""Fixtures for pure domain tests."""

from __future__ import annotations

import pytest

from domain.listing import Listing
from domain.wallet import Wallet
from tests.unit.domain.support import make_listing, make_wallets


@pytest.fixture
def listing() -> Listing:
    """A published goods listing with a 5% royalty."""
    return make_listing()


@pytest.fixture
def wallets() -> dict[str, Wallet]:
    """Buyer (funded), seller, creator and platform wallets in EUR."""
    return make_wallets()
