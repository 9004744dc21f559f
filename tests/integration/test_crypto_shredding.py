"""Crypto-shredding on the real services: the key lives and dies with its event, and forgetting reaches every copy.

The failure cases (a version clash, a crash before the commit) run on the shared store. The end-to-end test has
its own events table and relay tables (a PostgreSQL schema), topics (`t<hex>.bazaar.*`) and projection schema
and alias, built with the relay tests' `Isolated` helpers and dropped afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from kafka.admin import NewTopic
from psycopg import sql
from typer.testing import CliRunner

from commands.application import Marketplace, VersionConflict
from commands.audit.cli import audit_app
from commands.audit.replay import rebuild_from_kafka, rebuild_from_store
from commands.audit.source import LogSource
from commands.handlers import listings, orders, users, wallets
from commands.personal_data import KeyShredded
from domain.user import User
from infra.adapters.search import SearchPort
from infra.settings import REPO_ROOT, Settings
from infra.tokens import Principal
from projections.catch_up import catch_up
from projections.config import ProjectionConfig
from projections.rebuild import rebuild
from projections.registry import projection_names
from schemas.listing import DraftListing, PublishListing
from schemas.messages import decode_event
from schemas.names import CHECKPOINTS_TOPIC, DOMAIN_AGGREGATES, PROJECTIONS_DLQ_TOPIC, domain_topic, topic
from schemas.order import ConfirmDelivery, PlaceOrder, ShipOrder
from schemas.user import ChangeUserRole, ForgetUser, RegisterUser
from schemas.wallet import Deposit
from tests.integration.projection_world import search_docs
from tests.integration.test_relay import Isolated, caught_up, delete_topics, read_topic, running, wait_for
from tests.support import require_services

PASSWORD = "a-long-enough-password"
ADMIN = Principal(UUID(int=1), "admin")


def _register(app: Marketplace, role: str, tag: str) -> tuple[Principal, RegisterUser]:
    cmd = RegisterUser(email=f"{role}-{tag}@example.org", password=PASSWORD, display_name=f"Name {tag}",
                       role=role, address=f"{tag} Analytical Street, London")
    return Principal(app.run(lambda: users.register_user(app, cmd)).aggregate_id, role), cmd


def _user(app: Marketplace, user_id: UUID) -> User:
    user = app.repository.get(user_id)
    assert isinstance(user, User)
    return user


# --- the key changes in the transaction of its event ----------------------------------------------------------


@pytest.fixture(scope="module")
def rival(settings: Settings) -> Iterator[Marketplace]:
    """A second writer on the same store, as another API process would be."""
    require_services(settings, "postgres", "redis")
    app = Marketplace(settings)
    yield app
    app.close()


def test_a_forget_that_loses_a_version_race_keeps_the_key_and_the_account(
    marketplace: Marketplace, rival: Marketplace
) -> None:
    seller, cmd = _register(marketplace, "seller", uuid.uuid4().hex[:10])
    ciphertext = _user(marketplace, seller.user_id).encrypted_profile or ""
    raced: list[int] = []

    def forget_while_an_admin_changes_the_role() -> Any:
        change = users.forget_user(marketplace, seller, ForgetUser(user_id=seller.user_id))
        if not raced:  # the role change commits between the handler and the forget's commit
            current = rival.load(User, seller.user_id).role.value
            role = ChangeUserRole(user_id=seller.user_id, role="buyer" if current == "seller" else "seller")
            raced.append(rival.run(lambda: users.change_user_role(rival, ADMIN, role)).version)
        return change

    with pytest.raises(VersionConflict):
        marketplace.run(forget_while_an_admin_changes_the_role, if_match=1)

    user = _user(marketplace, seller.user_id)
    assert raced == [2] and user.version == 2 and not user.forgotten  # no Forgotten event in the log
    assert marketplace.vault.decrypt(seller.user_id, ciphertext)["email"] == cmd.email  # the key is still there
    assert users.authenticate(marketplace, cmd.email, PASSWORD).user_id == seller.user_id

    # Unpinned, the same race is re-run on fresh state: the key goes with the Forgotten event, not before.
    raced.clear()
    marketplace.run(forget_while_an_admin_changes_the_role)
    assert _user(marketplace, seller.user_id).forgotten
    with pytest.raises(KeyShredded):
        marketplace.vault.decrypt(seller.user_id, ciphertext)


CRASH_CHILD = """
import json, os, sys
from uuid import UUID
from commands.application import Marketplace
from commands.handlers import users
from commands.store import BazaarRecorder
from infra.settings import get_settings
from infra.tokens import Principal
from schemas.user import ForgetUser, RegisterUser

cfg = json.loads(sys.argv[1])
written = BazaarRecorder._fetch_ids_after_insert_events

def die_before_commit(self, curs, stored_events, **kwargs):
    ids = written(self, curs, stored_events, **kwargs)  # events, idempotency and key rows: sent, not committed
    curs.connection.pgconn.flush()
    os._exit(17)

BazaarRecorder._fetch_ids_after_insert_events = die_before_commit
app = Marketplace(get_settings())
if cfg["forget"]:
    user = Principal(UUID(cfg["forget"]), "seller")
    app.run(lambda: users.forget_user(app, user, ForgetUser(user_id=user.user_id)))
else:
    app.run(lambda: users.register_user(app, RegisterUser(**cfg["register"])))
"""


def _crash_child(**cfg: Any) -> None:
    """A command API process killed after its statements reached PostgreSQL and before its COMMIT."""
    done = subprocess.run([sys.executable, "-c", CRASH_CHILD, json.dumps({"forget": None, **cfg})], cwd=REPO_ROOT,
                          capture_output=True, timeout=120)
    assert done.returncode == 17, done.stderr.decode()[-3000:]


def test_a_crash_before_the_forget_commits_keeps_the_key_and_the_account(marketplace: Marketplace) -> None:
    seller, cmd = _register(marketplace, "seller", uuid.uuid4().hex[:10])
    ciphertext = _user(marketplace, seller.user_id).encrypted_profile or ""

    _crash_child(forget=str(seller.user_id))

    user = _user(marketplace, seller.user_id)
    assert user.version == 1 and not user.forgotten  # the store is shared: the user's own log, not the max id
    assert marketplace.vault.decrypt(seller.user_id, ciphertext)["address"] == cmd.address
    assert users.authenticate(marketplace, cmd.email, PASSWORD).user_id == seller.user_id


def test_a_crash_before_a_registration_commits_leaves_no_key(marketplace: Marketplace) -> None:
    cmd = RegisterUser(email=f"crash-{uuid.uuid4().hex[:10]}@example.org", password=PASSWORD, display_name="C")
    user_id = users.user_id_for(marketplace, cmd.email)

    _crash_child(register=cmd.model_dump())

    assert not marketplace.exists(user_id)
    assert not marketplace.vault.has_key(user_id)
    # The e-mail is still free, and the registration that does commit stores the key its profile needs.
    marketplace.run(lambda: users.register_user(marketplace, cmd))
    profile = _user(marketplace, user_id).encrypted_profile or ""
    assert marketplace.vault.decrypt(user_id, profile)["email"] == cmd.email


# --- end to end: register, publish, project, forget, and look everywhere ---------------------------------------


@pytest.fixture
def world(settings: Settings, tmp_path: Any) -> Iterator[Isolated]:
    """An events table in its own schema (with the relay's tables), every domain topic, a projection schema."""
    require_services(settings, "postgres", "kafka", "redis", "opensearch")
    tag = uuid.uuid4().hex[:10]
    schema = f"rt{tag}"

    def construct_env(self: Any, name: str, env: Any = None) -> Any:
        return Marketplace.construct_env(self, name, {**(env or {}), "POSTGRES_SCHEMA": schema})

    small = settings.model_copy(update={"pg_pool_size": 2})
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(f"{schema}rm")))
    app = type(f"Shred{tag}", (Marketplace,), {"name": schema, "construct_env": construct_env})(small)
    from infra.adapters.kafka import make_admin

    admin = make_admin(settings)
    iso = Isolated(small, tag, app, admin, tmp_path)
    topics = [domain_topic(a, iso.prefix) for a in DOMAIN_AGGREGATES]
    topics += [topic(CHECKPOINTS_TOPIC, iso.prefix), topic(PROJECTIONS_DLQ_TOPIC, iso.prefix)]
    admin.create_topics([NewTopic(name, 3 if "checkpoints" not in name else 1, 1) for name in topics])
    try:
        yield iso
    finally:
        app.close()
        admin.close()
        delete_topics(settings, topics)
        SearchPort.from_settings(settings).client.indices.delete(index=f"{schema}rm-listings-v*",
                                                                 ignore_unavailable=True)
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            for name in (schema, f"{schema}rm"):
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _projections(iso: Isolated) -> ProjectionConfig:
    return ProjectionConfig(iso.settings, topic_prefix=iso.prefix, schema=f"{iso.schema}rm",
                            index_alias=f"{iso.schema}rm-listings")


def _relay_all(iso: Isolated) -> None:
    with running(iso.relay(checkpoint_interval_s=0.2)):
        wait_for(caught_up(iso), 60, "the relay to publish every event")


def _everything_on_kafka(iso: Isolated) -> bytes:
    return b"\n".join(record.value or b"" for a in DOMAIN_AGGREGATES
                      for record in read_topic(iso.settings, domain_topic(a, iso.prefix)))


def _everything_in_read_models(config: ProjectionConfig) -> dict[str, list[str]]:
    """Every row of every table of the projections' schema as text, and every search document."""
    found: dict[str, list[str]] = {}
    with config.connect() as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                              (config.schema,)).fetchall()
        for (name,) in tables:
            query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(config.schema, name))
            found[name] = [row[0] for row in conn.execute(query).fetchall()]
    found["search index"] = [json.dumps(doc) for doc in search_docs(config.search_port(), config.index_alias).values()]
    return found


def _rows(config: ProjectionConfig, table: str, key: str, value: UUID) -> list[dict[str, Any]]:
    with config.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        query = sql.SQL("SELECT * FROM {} WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(key))
        return cur.execute(query, (value,)).fetchall()


def _sale_rows(config: ProjectionConfig, sold: UUID, on_sale: UUID, order_id: UUID) -> list[list[dict[str, Any]]]:
    return [_rows(config, "rm_listings", "listing_id", sold), _rows(config, "rm_listings", "listing_id", on_sale),
            _rows(config, "rm_orders", "order_id", order_id)]


def _sale(app: Marketplace, seller: Principal, buyer: Principal) -> tuple[UUID, UUID, UUID]:
    """A listing sold and delivered, and a second one still on sale."""
    app.run(lambda: wallets.deposit(app, buyer, buyer.user_id,
                                    Deposit(amount={"amount": 9_000, "currency": "EUR"}, reference="psp-1")))
    ids = []
    for title in ("Brass lamp", "Oak chair"):
        draft = DraftListing(kind="goods", title=title, category="home", price={"amount": 4_000, "currency": "EUR"})
        listing_id = app.run(lambda d=draft: listings.draft_listing(app, seller, d)).aggregate_id
        app.run(lambda i=listing_id: listings.publish_listing(app, seller, PublishListing(listing_id=i)))
        ids.append(listing_id)
    order_id = app.run(lambda: orders.place_order(app, buyer, PlaceOrder(listing_id=ids[0]))).aggregate_id
    app.run(lambda: orders.ship_order(app, seller, ShipOrder(order_id=order_id, tracking_ref="T-1")))
    app.run(lambda: orders.confirm_delivery(app, buyer, ConfirmDelivery(order_id=order_id)))
    return ids[0], ids[1], order_id


def _audit(iso: Isolated, *args: str) -> dict[str, Any]:
    options = ["--schema", iso.schema, "--events-table", f"{iso.schema}_events", "--topic-prefix", iso.prefix, "--json"]
    result = CliRunner().invoke(audit_app, [*args, *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.output[result.output.index("{"):])
    return report


def test_forgetting_a_user_reaches_kafka_every_read_model_a_rebuild_the_audit_and_a_data_team(
    world: Isolated,
) -> None:
    app, tag = world.app, world.tag
    seller, personal = _register(app, "seller", tag)
    buyer, _ = _register(app, "buyer", f"{tag}b")
    sold, on_sale, order_id = _sale(app, seller, buyer)
    secrets = (personal.email, personal.display_name, personal.address or "")
    config = _projections(world)

    # Before: the log and Kafka hold ciphertext only, which the key holder (the platform) can open.
    _relay_all(world)
    published = _everything_on_kafka(world)
    assert not [s for s in secrets if s.encode() in published]
    registered = [decode_event(r.value or b"", r.headers) for r in read_topic(world.settings, world.prefix + "user")]
    seller_events = [e for e in registered if e.aggregate_id == seller.user_id]
    ciphertext = seller_events[0].encrypted_profile
    assert seller_events[0].credential_hash is None  # redacted on the wire
    assert app.vault.decrypt(seller.user_id, ciphertext) == {
        "email": personal.email, "display_name": personal.display_name, "address": personal.address}
    catch_up(config)
    before = _sale_rows(config, sold, on_sale, order_id)
    assert [len(rows) for rows in before] == [1, 1, 1] and before[2][0]["seller_id"] == seller.user_id

    app.run(lambda: users.forget_user(app, seller, ForgetUser(user_id=seller.user_id)))
    _relay_all(world)
    catch_up(config)
    for name in projection_names():
        rebuild(config, name)

    # After: the key is gone, so no copy can be opened, and no read model or index ever held the plaintext.
    with pytest.raises(KeyShredded):
        app.vault.decrypt(seller.user_id, ciphertext)
    assert not app.vault.has_key(seller.user_id) and app.vault.has_key(buyer.user_id)
    models = _everything_in_read_models(config)
    for where in ("rm_listings", "search index"):  # the scan sees the real rows
        assert any("Brass lamp" in text for text in models[where]), where
    assert not [(t, s) for t, texts in models.items() for text in texts for s in secrets if s in text]

    # A data team replaying the topic from offset 0 (what a new consumer does) sees the forget and no secret.
    seen = [decode_event(r.value or b"", r.headers) for r in read_topic(world.settings, world.prefix + "user")]
    mine = [type(e).__name__ for e in seen if e.aggregate_id == seller.user_id]
    assert mine == ["UserRegistered", "UserForgotten"]
    assert not [s for s in secrets if s.encode() in _everything_on_kafka(world)]

    # The auditors: the log still verifies, and every aggregate folds to the forgotten state, from both sources.
    assert _audit(world, "verify")["ok"] is True
    assert _audit(world, "replay")["ok"] is True
    assert _audit(world, "replay", "--from-kafka")["ok"] is True
    source = LogSource(world.settings, world.schema, f"{world.schema}_events")
    from_store = rebuild_from_store(source).aggregates[str(seller.user_id)]
    from_kafka = rebuild_from_kafka(world.settings, topic_prefix=world.prefix)[0].aggregates[str(seller.user_id)]
    for folded in (from_store, from_kafka):
        assert folded.forgotten and folded.encrypted_profile is None and folded.credential_hash is None

    # The forgotten seller's listings and order stay as they were, and money still adds up.
    assert _sale_rows(config, sold, on_sale, order_id) == before
    assert [before[0][0]["status"], before[1][0]["status"], before[2][0]["status"]] == ["sold", "published", "released"]
    wallets_rows = [_rows(config, "rm_wallets", "owner_id", owner) for owner in (seller.user_id, buyer.user_id)]
    fee = 4_000 * 500 // 10_000
    assert sum(row["available"] + row["held"] for rows_ in wallets_rows for row in rows_) == 9_000 - fee
