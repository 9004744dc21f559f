"""`bazaar demo` runs the marketplace end to end against the platform that `./run up` started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.settings import Settings
from tests.support import require_services

REPO = Path(__file__).resolve().parents[2]


def test_demo_sells_through_escrow_and_prints_the_events(settings: Settings) -> None:
    require_services(settings, "postgres", "kafka", "command-api")
    result = subprocess.run([sys.executable, "-m", "infra.cli", "demo"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "released" in out
    for event in ("User.Registered", "Wallet.Deposited", "Listing.Published", "Order.Placed", "Wallet.Held",
                  "Order.Released", "Wallet.Credited"):
        assert event in out, f"{event} missing from the demo output"
