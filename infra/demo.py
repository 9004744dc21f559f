"""`./run demo`: the marketplace end to end over the platform's own HTTP APIs, then what it appended.

It reaches the platform the way its users do — HTTP, the Kafka topics, `bazaar audit verify` — and imports
no upper layer: the events it shows are read back from the topics the relay published them to.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from infra.settings import Settings
from schemas.messages import header_value
from schemas.names import DOMAIN_AGGREGATES, domain_topic

PASSWORD = "demo-password-123"
DOMAIN_TOPICS = [domain_topic(aggregate) for aggregate in DOMAIN_AGGREGATES]


class DemoFailed(RuntimeError):
    """A step of the demo got an unexpected answer."""


@dataclass
class Account:
    name: str
    user_id: str
    headers: dict[str, str]


class Demo:
    """A scripted marketplace session: every step is a real HTTP call, checked."""

    def __init__(self, settings: Settings, console: Console) -> None:
        self.console = console
        self.commands = httpx.Client(base_url=f"http://{settings.bind_host}:{settings.command_api_port}/v1", timeout=30)
        self.reads = httpx.Client(base_url=f"http://{settings.bind_host}:{settings.read_api_port}/v1", timeout=30)
        self.positions: list[int] = []
        self.run_id = uuid.uuid4().hex[:6]

    def call(self, method: str, path: str, account: Account | None = None, expect: int = 200, **kw: Any) -> Any:
        response = self.commands.request(method, path, headers=account.headers if account else None, **kw)
        if response.status_code != expect:
            raise DemoFailed(f"{method} {path} → {response.status_code}: {response.text}")
        body = response.json()
        self.positions.extend(body.get("positions", []))
        return body

    def register(self, name: str, role: str) -> Account:
        email = f"{name.lower()}-{self.run_id}@demo.bazaar"
        body = {"email": email, "password": PASSWORD, "display_name": name, "role": role}
        self.call("POST", "/users", json=body, expect=201)
        token = self.call("POST", "/auth/token", json={"email": email, "password": PASSWORD})
        self.console.print(f"registered [bold]{name}[/] as {role}: {token['user_id']}")
        return Account(name, token["user_id"], {"Authorization": f"Bearer {token['access_token']}"})

    def sell_through_escrow(self) -> dict[str, Any]:
        """Seller lists a camera, buyer deposits and buys it, seller ships, buyer confirms: escrow released."""
        seller, buyer = self.register("Sam", "seller"), self.register("Bea", "buyer")
        deposit = {"amount": {"amount": 50_000, "currency": "EUR"}, "reference": f"psp-{self.run_id}"}
        self.call("POST", f"/wallets/{buyer.user_id}/deposits", buyer, json=deposit)
        listing = self.call("POST", "/listings", seller, expect=201, json={
            "kind": "goods", "title": "Leica M6 film camera", "description": "1986, serviced, with strap",
            "category": "cameras", "price": {"amount": 32_000, "currency": "EUR"},
        })
        self.call("POST", f"/listings/{listing['listing_id']}/publish", seller)
        order = self.call("POST", "/orders", buyer, expect=201, json={"listing_id": listing["listing_id"]})
        self.console.print(f"order {order['order_id']}: {order['status']}")
        self.call("POST", f"/orders/{order['order_id']}/ship", seller, json={"tracking_ref": "DHL-123"})
        released = self.call("POST", f"/orders/{order['order_id']}/confirm-delivery", buyer)
        self.console.print(f"order {order['order_id']}: [green]{released['status']}[/]")
        return {"seller": seller, "buyer": buyer, "listing": listing, "order": released}

    def license_a_model(self, seller: Account, buyer: Account) -> dict[str, Any]:
        """The seller lists an AI model and a lens, licenses the model to the buyer, who uses it."""
        model = self.call("POST", "/listings", seller, expect=201, json={
            "kind": "ai_model", "title": "Film grain denoiser v2", "category": "vision-models",
            "description": "Removes film grain from scans", "price": {"amount": 9_900, "currency": "EUR"},
        })
        self.call("POST", f"/listings/{model['listing_id']}/publish", seller)
        lens = self.call("POST", "/listings", seller, expect=201, json={
            "kind": "goods", "title": "Leica Summicron 50mm lens", "category": "cameras",
            "description": "For the M6", "price": {"amount": 18_000, "currency": "EUR"},
        })
        self.call("POST", f"/listings/{lens['listing_id']}/publish", seller)
        licence = self.call("POST", "/licences", seller, expect=201, json={
            "listing_id": model["listing_id"], "licensee_id": buyer.user_id, "kind": "usage_metered", "quota": 1_000,
        })
        self.call("POST", f"/licences/{licence['licence_id']}/usage", buyer, json={"units": 250})
        return dict(licence)

    def read(self, path: str, account: Account | None = None, **params: Any) -> Any:
        """A read that waits until the projections applied everything this demo wrote."""
        params["after"] = max(self.positions)
        response = self.reads.get(path, params=params, headers=account.headers if account else None)
        if response.status_code != 200:
            raise DemoFailed(f"GET {path} → {response.status_code}: {response.text}")
        return response.json()

    def show_reads(self, sale: dict[str, Any], licence: dict[str, Any]) -> None:
        """Search, the seller's dashboard and a licence check, read-your-writes."""
        seller, buyer = sale["seller"], sale["buyer"]
        found = self.read("/listings/search", q="leica lens", size=5)
        table = Table(title=f"search 'leica lens': {found['total']} hit(s)")
        for column in ("title", "status", "price", "score"):
            table.add_column(column)
        for item in found["items"]:
            table.add_row(item["title"], item["status"], f"{item['price_amount'] / 100:.2f} {item['currency']}",
                          f"{item['score']:.2f}" if item.get("score") is not None else "")
        self.console.print(table)
        facets = {f["value"]: f["count"] for f in (found.get("facets") or {}).get("category", [])}
        self.console.print(f"category facets: {facets}")
        dashboard = self.read(f"/sellers/{seller.user_id}/dashboard", seller)
        self.console.print(f"seller dashboard: {dashboard}")
        check = self.read(f"/licences/{licence['licence_id']}/check", buyer)
        self.console.print(f"licence check: allowed={check['allowed']} reason={check['reason']} "
                           f"remaining={check.get('remaining')}")


@dataclass(frozen=True)
class RelayedEvent:
    """One of the demo's events as the relay published it (headers and envelope of the Kafka message)."""

    position: int
    topic: str
    aggregate_id: str
    version: int
    event_type: str
    prev_hash: str


def events_table(events: list[RelayedEvent]) -> Table:
    """The events the demo appended, in log order, read back from the topics they were relayed to."""
    table = Table(title=f"{len(events)} events appended")
    for column in ("position", "aggregate", "version", "event", "prev_hash"):
        table.add_column(column)
    for event in sorted(events, key=lambda e: e.position):
        table.add_row(str(event.position), event.aggregate_id[:8], str(event.version), event.event_type,
                      event.prev_hash[:12])
    return table


def end_offsets(settings: Settings) -> dict[Any, int]:
    """Where each domain partition ends now: the demo reads what it relays from there."""
    from kafka import TopicPartition

    from infra.adapters.kafka import make_consumer

    consumer = make_consumer(settings, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for topic in DOMAIN_TOPICS
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return dict(consumer.end_offsets(partitions))
    finally:
        consumer.close()


def relayed_events(positions: list[int], start: dict[Any, int], settings: Settings,
                   timeout_s: float = 30.0) -> list[RelayedEvent]:
    """The demo's events as they arrived on the domain topics (waiting for the relay)."""
    from infra.adapters.kafka import make_consumer

    wanted = set(positions)
    consumer = make_consumer(settings, group_id=None, consumer_timeout_ms=1000)
    consumer.assign(list(start))
    for partition, offset in start.items():
        consumer.seek(partition, offset)
    found: list[RelayedEvent] = []
    deadline = time.monotonic() + timeout_s
    try:
        while wanted and time.monotonic() < deadline:
            for message in consumer:
                position = int(header_value(message.headers, "notification_id") or 0)
                if position in wanted:
                    wanted.discard(position)
                    found.append(_relayed(position, message))
    finally:
        consumer.close()
    if wanted:
        raise DemoFailed(f"{len(wanted)} events did not arrive on Kafka within {timeout_s:.0f}s")
    return found


def _relayed(position: int, message: Any) -> RelayedEvent:
    envelope = json.loads(message.value)
    return RelayedEvent(position, message.topic, str(envelope["aggregate_id"]), int(envelope["version"]),
                        header_value(message.headers, "event_type") or "?", str(envelope["prev_hash"]))


def relayed_counts(events: list[RelayedEvent]) -> dict[str, int]:
    """How many of the demo's events went to each domain topic."""
    return dict(Counter(event.topic for event in sorted(events, key=lambda e: e.topic)))


def audit_passes(settings: Settings, console: Console) -> None:
    """`bazaar audit verify` over the whole store: every chain and signed tree head holds."""
    result = subprocess.run([sys.executable, "-m", "infra.cli", "audit", "verify", "--from-store"],
                            capture_output=True, text=True, check=False)
    console.print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr)
    if result.returncode != 0:
        raise DemoFailed("audit verify failed:\n" + result.stdout + result.stderr)


def run_demo(settings: Settings, console: Console) -> None:
    """Run every demo step and print the outcome."""
    demo = Demo(settings, console)
    start = end_offsets(settings)
    sale = demo.sell_through_escrow()
    licence = demo.license_a_model(sale["seller"], sale["buyer"])
    events = relayed_events(demo.positions, start, settings)
    console.print(events_table(events))
    console.print(f"relayed to Kafka: {relayed_counts(events)}")
    demo.show_reads(sale, licence)
    audit_passes(settings, console)
