"""`bazaar demo` runs the marketplace end to end against the platform that `./run up` started:
commands over HTTP, the relay to Kafka, projections and the read API, and the audit at the end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.settings import Settings
from tests.support import require_services

REPO = Path(__file__).resolve().parents[2]


def test_demo_sells_through_escrow_and_prints_the_events(settings: Settings) -> None:
    require_services(settings, "postgres", "kafka", "opensearch", "command-api", "read-api")
    result = subprocess.run([sys.executable, "-m", "infra.cli", "demo"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "released" in out
    for event in ("User.Registered", "Wallet.Deposited", "Listing.Published", "Order.Placed", "Wallet.Held",
                  "Order.Released", "Wallet.Credited"):
        assert event in out, f"{event} missing from the demo output"
    assert "relayed to Kafka" in out and "'bazaar.order': 5" in out
    assert "Leica Summicron 50mm lens" in out  # found by the search index, read-your-writes
    assert "licence check: allowed=True reason=ok remaining=750" in out
    assert "OK: every hash chain holds" in out
