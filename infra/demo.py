"""`./run demo`: the marketplace end to end over the platform's own HTTP APIs, then what it appended."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from infra.settings import Settings

PASSWORD = "demo-password-123"


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


def events_table(positions: list[int], settings: Settings) -> Table:
    """The events the demo appended, read back from the event store."""
    from commands.application import Marketplace

    app = Marketplace(settings)
    try:
        table = Table(title=f"{len(positions)} events appended")
        for column in ("position", "aggregate", "version", "event", "prev_hash"):
            table.add_column(column)
        first, last = min(positions), max(positions)
        wanted = set(positions)
        for notification in app.recorder.select_notifications(first, last - first + 1, stop=last):
            if notification.id in wanted:
                event = app.mapper.to_domain_event(notification)
                table.add_row(str(notification.id), str(event.originator_id)[:8], str(event.originator_version),
                              type(event).__qualname__, event.prev_hash[:12])
        return table
    finally:
        app.close()


def run_demo(settings: Settings, console: Console) -> None:
    """Run every demo step and print the outcome."""
    demo = Demo(settings, console)
    demo.sell_through_escrow()
    console.print(events_table(demo.positions, settings))
