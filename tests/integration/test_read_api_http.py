"""The read API over real HTTP, on read models projected from commands sent to the real command API.

A small marketplace is driven through the command API (real event store); its events are published, as
the relay publishes them, to this module's own topics and projected into its own schema and search alias,
which a read API on a free port then serves. Checked here: the platform revenue route against the orders
settled, and the whole OpenAPI document against what the read API answers (schemathesis, every check).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from kafka.admin import NewTopic

from commands.application import Marketplace
from commands.handlers.users import register_user
from commands.messages import to_message
from domain.wallet import wallet_id_for
from infra.adapters.kafka import make_admin, make_producer
from infra.adapters.search import SearchPort
from infra.settings import Settings
from projections.catch_up import catch_up
from projections.config import ProjectionConfig
from projections.registry import projection_topics
from read_api.app import create_app
from read_api.config import ReadApiConfig
from read_api.embedding import MiniLmEmbedder
from schemas.messages import EventMessage
from schemas.names import DOMAIN_AGGREGATES, PROJECTIONS_DLQ_TOPIC
from schemas.user import RegisterUser
from tests.support import require_services

pytestmark = pytest.mark.integration

PASSWORD = "a-long-enough-password"
PARTITIONS = 3
# Aggregates whose events the read models need; users feed none of them.
PROJECTED = ("listing", "order", "wallet")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@dataclass
class Party:
    """A registered user and the bearer header of a token the command API issued."""

    user_id: str
    headers: dict[str, str]


@dataclass
class Market:
    """What the commands created: the ids whose events are projected, and the orders' expected figures."""

    aggregate_ids: set[uuid.UUID] = field(default_factory=set)
    revenue: dict[str, dict[str, int]] = field(default_factory=dict)
    admin: Party | None = None
    seller: Party | None = None
    # Rows that exist, for schemathesis to read besides the random ids it makes up.
    known: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _email(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:10]}@example.com"


def _token(api: httpx.Client, email: str, user_id: str) -> Party:
    token = api.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return Party(user_id, {"Authorization": f"Bearer {token.json()['access_token']}"})


def register(api: httpx.Client, market: Market, role: str) -> Party:
    email = _email(role)
    created = api.post("/users", json={"email": email, "password": PASSWORD, "display_name": role, "role": role})
    assert created.status_code == 201, created.text
    party = _token(api, email, created.json()["user_id"])
    market.aggregate_ids.add(uuid.UUID(party.user_id))
    return party


def register_admin(api: httpx.Client, marketplace: Marketplace) -> Party:
    """Admins are not self-service: registered through the handler, then logged in over HTTP."""
    cmd = RegisterUser(email=_email("admin"), password=PASSWORD, display_name="Admin")
    result = marketplace.run(lambda: register_user(marketplace, cmd, role="admin"))
    return _token(api, cmd.email, str(result.aggregate_id))


def deposit(api: httpx.Client, market: Market, user: Party, amount: int, currency: str) -> None:
    body = {"amount": {"amount": amount, "currency": currency}, "reference": f"psp-{uuid.uuid4().hex[:8]}"}
    response = api.post(f"/wallets/{user.user_id}/deposits", headers=user.headers, json=body)
    assert response.status_code == 200, response.text
    market.aggregate_ids.add(wallet_id_for(uuid.UUID(user.user_id), currency))


def listing(api: httpx.Client, market: Market, seller: Party, price: int, currency: str, **extra: Any) -> str:
    body = {"kind": "goods", "title": f"Camera in {currency}", "description": "Works well", "category": "cameras",
            "price": {"amount": price, "currency": currency}, **extra}
    drafted = api.post("/listings", headers=seller.headers, json=body)
    assert drafted.status_code == 201, drafted.text
    listing_id = str(drafted.json()["listing_id"])
    assert api.post(f"/listings/{listing_id}/publish", headers=seller.headers).status_code == 200
    market.aggregate_ids.add(uuid.UUID(listing_id))
    return listing_id


def order(api: httpx.Client, market: Market, buyer: Party, listing_id: str) -> str:
    placed = api.post("/orders", headers=buyer.headers, json={"listing_id": listing_id})
    assert placed.status_code == 201, placed.text
    order_id = str(placed.json()["order_id"])
    market.aggregate_ids.add(uuid.UUID(order_id))
    return order_id


def step(api: httpx.Client, user: Party, path: str, body: dict[str, Any] | None = None) -> None:
    response = api.post(path, headers=user.headers, json=body or {})
    assert response.status_code == 200, (path, response.text)


def give_published_listings_vectors(settings: Settings, schema: str) -> None:
    """Enrich the world's published listings (their real embeddings, straight into the vectors table: the
    vectors projection is tested in test_projections), so semantic search is servable, not a 503."""
    embedder = MiniLmEmbedder()
    with psycopg.connect(settings.pg_conninfo, autocommit=True, options=f"-c search_path={schema},public") as conn:
        rows = conn.execute("SELECT listing_id, title, description FROM rm_listings WHERE status = 'published'")
        for listing_id, title, description in rows.fetchall():
            vector = "[" + ",".join(str(float(x)) for x in embedder.embed(f"{title}\n{description}")) + "]"
            conn.execute("INSERT INTO rm_listing_vectors (listing_id, embedding, model_id, model_version,"
                         " updated_at, version, position) VALUES (%s, %s::vector, 'all-MiniLM-L6-v2', '1',"
                         " now(), 1, 1)", (listing_id, vector))


def trade(api: httpx.Client, marketplace: Marketplace, fee_bps: int) -> Market:
    """Orders in every escrow state, in two currencies, one with a creator royalty (figures in minor units)."""
    market = Market()
    seller, creator = register(api, market, "seller"), register(api, market, "seller")
    buyer, other = register(api, market, "buyer"), register(api, market, "buyer")
    market.admin, market.seller = register_admin(api, marketplace), seller
    for user, currency in ((seller, "EUR"), (seller, "USD"), (creator, "EUR")):  # opened when first paid
        market.aggregate_ids.add(wallet_id_for(uuid.UUID(user.user_id), currency))
    deposit(api, market, buyer, 100_000, "EUR")
    deposit(api, market, other, 50_000, "USD")

    def fee(price: int) -> int:
        return price * fee_bps // 10_000

    royalty_listing = listing(api, market, seller, 20_000, "EUR", creator_id=creator.user_id, royalty_bps=1_000)
    released = order(api, market, buyer, royalty_listing)
    step(api, seller, f"/orders/{released}/ship", {})
    step(api, buyer, f"/orders/{released}/confirm-delivery")
    refunded = order(api, market, buyer, listing(api, market, seller, 7_000, "EUR"))
    step(api, buyer, f"/orders/{refunded}/cancel", {"reason": "changed my mind"})
    held = order(api, market, buyer, listing(api, market, seller, 3_000, "EUR"))
    step(api, seller, f"/orders/{held}/ship", {})
    disputed = order(api, market, buyer, listing(api, market, seller, 4_000, "EUR"))
    step(api, buyer, f"/orders/{disputed}/disputes", {"reason": "slow"})
    usd = order(api, market, other, listing(api, market, seller, 10_000, "USD"))
    step(api, seller, f"/orders/{usd}/ship", {})
    step(api, other, f"/orders/{usd}/confirm-delivery")
    market.known = {"order_id": released, "user_id": buyer.user_id, "seller_id": seller.user_id,
                    "listing_id": royalty_listing}

    market.revenue = {
        "EUR": {"fees_amount": fee(20_000), "royalties_paid_amount": 2_000, "escrow_held_amount": 3_000 + 4_000,
                "sales_released_amount": 20_000, "refunded_amount": 7_000, "orders_released": 1,
                "orders_in_escrow": 2, "orders_refunded": 1},
        "USD": {"fees_amount": fee(10_000), "royalties_paid_amount": 0, "escrow_held_amount": 0,
                "sales_released_amount": 10_000, "refunded_amount": 0, "orders_released": 1,
                "orders_in_escrow": 0, "orders_refunded": 0},
    }
    return market


def stored_messages(marketplace: Marketplace, after: int, ids: set[uuid.UUID], prefix: str) -> list[EventMessage]:
    """What the relay would publish for these aggregates' events, read from the notification log."""
    messages: list[EventMessage] = []
    while True:
        batch = marketplace.recorder.select_notifications(after, 1_000, inclusive_of_start=False)
        if not batch:
            return messages
        for notification in batch:
            if notification.originator_id in ids:
                event = marketplace.mapper.to_domain_event(notification)
                messages.append(to_message(event, notification.id, prefix))
        after = batch[-1].id


def publish(settings: Settings, messages: list[EventMessage]) -> None:
    producer = make_producer(settings)
    for message in messages:
        producer.send(message.topic, key=message.key, value=message.value, headers=message.headers)
    producer.flush()
    producer.close()


@dataclass
class World:
    """This module's topics, schema and alias, the market projected into them, and the read API serving it."""

    settings: Settings
    tag: str
    market: Market = field(default_factory=Market)
    base_url: str = ""

    @property
    def prefix(self) -> str:
        return f"t{self.tag}.bazaar."

    @property
    def schema(self) -> str:
        return f"t{self.tag}"

    @property
    def alias(self) -> str:
        return f"t{self.tag}-bazaar-listings"

    @property
    def topics(self) -> list[str]:
        return [f"{self.prefix}{name}" for name in (*DOMAIN_AGGREGATES, PROJECTIONS_DLQ_TOPIC)]


@pytest.fixture(scope="module")
def world(settings: Settings, api: httpx.Client, marketplace: Marketplace) -> Iterator[World]:
    require_services(settings, "postgres", "kafka", "opensearch", "redis")
    w = World(settings, uuid.uuid4().hex[:10])
    admin = make_admin(settings)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in w.topics])
    try:
        start = marketplace.recorder.max_notification_id() or 0
        w.market = trade(api, marketplace, settings.platform_fee_bps)
        publish(settings, stored_messages(marketplace, start, w.market.aggregate_ids, w.prefix))
        catch_up(ProjectionConfig(settings, topic_prefix=w.prefix, schema=w.schema, index_alias=w.alias))
        give_published_listings_vectors(settings, w.schema)
        with serve_reads(settings, w) as base_url:
            w.base_url = base_url
            # The first semantic query loads the embedding model (seconds): not a request's latency.
            warm = httpx.get(f"{base_url}/v1/listings/search", params={"q": "camera", "mode": "semantic"}, timeout=120)
            assert warm.status_code == 200, warm.text
            yield w
    finally:
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {w.schema} CASCADE")
        SearchPort.from_settings(settings).client.indices.delete(index=f"{w.alias}-v*", ignore_unavailable=True)
        admin.delete_topics(w.topics)
        admin.close()


class serve_reads:  # noqa: N801 - used as a context manager, named like one
    """The read API on the world's schema and alias, under uvicorn on a free port, in this process."""

    def __init__(self, settings: Settings, world: World) -> None:
        config = ReadApiConfig(pg_schema=world.schema, search_alias=world.alias, after_timeout_s=0.05,
                               rate_limit=None)
        self.port = _free_port()
        app = create_app(settings, projection_topics=projection_topics(world.prefix), config=config)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "the read API did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def reads(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{world.base_url}/v1", timeout=30) as client:
        yield client


# -- platform revenue ----------------------------------------------------------------------------------------


def test_admins_read_platform_revenue_per_currency(world: World, reads: httpx.Client) -> None:
    assert world.market.admin is not None
    response = reads.get("/platform/revenue", headers=world.market.admin.headers)
    assert response.status_code == 200, response.text
    currencies = {row.pop("currency"): row for row in response.json()["currencies"]}
    assert set(currencies) == {"EUR", "USD"}
    for currency, expected in world.market.revenue.items():
        actual = {name: currencies[currency][name] for name in expected}
        assert actual == expected, currency


def test_platform_revenue_is_for_admins_only(world: World, reads: httpx.Client) -> None:
    assert world.market.seller is not None
    anonymous = reads.get("/platform/revenue")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "auth.missing_token"
    seller = reads.get("/platform/revenue", headers=world.market.seller.headers)
    assert seller.status_code == 403 and seller.json()["error"]["code"] == "auth.forbidden"


# -- the OpenAPI document tells the truth --------------------------------------------------------------------


def test_schemathesis_finds_no_server_error_and_no_undeclared_status(world: World, tmp_path: Path) -> None:
    """Every check, bounded: each answer is declared, shaped as declared, and never a 5xx."""
    assert world.market.admin is not None
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG + "".join(
        KNOWN_ROW.format(path=path, name=name, value=world.market.known[name]) for path, name in KNOWN_PATHS
    ))
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "--no-color", "run", f"{world.base_url}/openapi.json",
        "--checks", "all", "--max-examples", "25", "--seed", "20261202", "--workers", "1",
        "--request-timeout", "30", "--exclude-path", "/v1/trends/stream",  # an endless event stream
        "--header", f"Authorization: {world.market.admin.headers['Authorization']}",
    ]
    # Run where its cache of past crashes goes to this test's own folder, not the repository.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    print(result.stdout[-4_000:])  # the run's summary, shown with -s or on failure
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]


# Valid requests the schema cannot tell from invalid ones: `?after=` beyond what the projections applied
# waits, then answers 408 (this world's relay never ran); rules across parameters are beyond what OpenAPI
# says of query parameters: search's (price_min <= price_max, page * size <= 10000, q needed by semantic and
# hybrid), trends' (category only with scope=listing); activity times must lie near the server's clock.
SCHEMATHESIS_CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "408"]

[[operations]]
include-path = "/v1/listings/search"
checks.positive_data_acceptance.expected-statuses = ["2xx", "408", "422"]

[[operations]]
include-path = "/v1/trends"
checks.positive_data_acceptance.expected-statuses = ["2xx", "422"]

[[operations]]
include-path = "/v1/activity"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "422"]
"""
# Operations that read a row this world holds (answers 200 to the admin), the rest make up ids (404).
KNOWN_PATHS = (
    ("/v1/orders/{order_id}", "order_id"), ("/v1/wallets/{user_id}", "user_id"),
    ("/v1/sellers/{seller_id}/dashboard", "seller_id"), ("/v1/listings/{listing_id}", "listing_id"),
)
KNOWN_ROW = """
[[operations]]
include-path = "{path}"
parameters = {{ "path.{name}" = "{value}" }}
"""
