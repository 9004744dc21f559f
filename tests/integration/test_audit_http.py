"""Auditors read the public key, signed tree heads and proofs over HTTP, and check them offline."""

from __future__ import annotations

import base64
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import sql
from typer.testing import CliRunner

from commands.api import create_app
from commands.application import Marketplace
from commands.audit.cli import audit_app
from commands.audit.headcheck import load_trusted_heads, read_heads
from commands.audit.kafka_source import published_leaves
from commands.audit.keys import public_key
from commands.audit.merkle import ProofError
from commands.audit.signing import check_proof_document
from commands.audit.source import LogSource
from commands.audit.verify import Evidence, verify_store
from commands.auth import TokenService, jwt_secret
from commands.handlers.users import register_user
from commands.relay import IntegrityError, Relay
from domain.money import Money
from domain.wallet import Wallet
from infra.settings import Settings
from schemas import names
from schemas.user import RegisterUser
from tests.support import recreate_topic, require_services


def token_headers(settings: Settings, marketplace: Marketplace, role: str) -> dict[str, str]:
    cmd = RegisterUser(email=f"{role}-{uuid.uuid4().hex[:10]}@example.com", password="a-long-password",
                       display_name=role)
    result = marketplace.run(lambda: register_user(marketplace, cmd, role=role))
    token = TokenService(jwt_secret(settings), 600).issue(result.aggregate_id, role)
    return {"Authorization": f"Bearer {token}"}


def signed_heads(api: httpx.Client, headers: dict[str, str], at_least: int, timeout_s: float = 30) -> list[Any]:
    """Heads as the relay signs them (every 1,000 events or 5 s), waiting for enough to exist."""
    deadline = time.monotonic() + timeout_s
    while True:
        heads = api.get("/audit/heads", headers=headers).json()
        if len(heads) >= at_least or time.monotonic() > deadline:
            return list(heads)
        time.sleep(0.5)


def test_auditor_gets_proofs_that_check_with_the_public_key_alone(
    settings: Settings, api: httpx.Client, marketplace: Marketplace
) -> None:
    require_services(settings, "postgres", "kafka")
    auditor = token_headers(settings, marketplace, "auditor")
    key = api.get("/audit/public-key").json()["public_key"]
    heads = signed_heads(api, auditor, at_least=1)
    assert heads, "the relay (started by ./run up) signed no tree head"
    head = heads[0]

    proof = api.get(f"/audit/proofs/inclusion/{head['last_notification_id']}", headers=auditor,
                    params={"head_size": head["tree_size"]})

    assert proof.status_code == 200, proof.text
    check_proof_document(proof.json(), head, key)
    # A proof moved to another leaf, or for another leaf hash, is refused as a proof (not by any error).
    assert proof.json()["leaf_index"] >= 1, "the shared relay's tree holds more than one leaf"
    with pytest.raises(ProofError):
        check_proof_document({**proof.json(), "leaf_index": proof.json()["leaf_index"] - 1}, head, key)
    other_leaf = base64.b64encode(bytes(32)).decode()
    with pytest.raises(ProofError, match="does not match"):
        check_proof_document({**proof.json(), "leaf_hash": other_leaf}, head, key)


def test_consistency_between_two_signed_heads(settings: Settings, api: httpx.Client, marketplace: Marketplace) -> None:
    auditor = token_headers(settings, marketplace, "auditor")
    key = api.get("/audit/public-key").json()["public_key"]
    token_headers(settings, marketplace, "buyer")  # one more event, so a newer head gets signed
    heads = signed_heads(api, auditor, at_least=2)
    assert len(heads) >= 2, "the relay signed fewer than two heads in 30 s"
    new, old = heads[0], heads[-1]

    proof = api.get("/audit/proofs/consistency", headers=auditor,
                    params={"old": old["tree_size"], "new": new["tree_size"]})

    assert proof.status_code == 200, proof.text
    check_proof_document(proof.json(), new, key, earlier_head=old)


def test_audit_trail_is_for_auditors_and_admins(
    settings: Settings, api: httpx.Client, marketplace: Marketplace
) -> None:
    buyer = token_headers(settings, marketplace, "buyer")
    auditor = token_headers(settings, marketplace, "auditor")

    assert api.get("/audit/heads").status_code == 401
    forbidden = api.get("/audit/heads", headers=buyer)
    unknown = api.get(f"/audit/proofs/inclusion/{uuid.uuid4()}:1", headers=auditor)

    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "auth.forbidden"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "audit.proof_unavailable"


# --- the witness, against a live in-process platform -------------------------------------------------


def _serve(app: Any) -> tuple[Any, threading.Thread, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, thread, port


@contextmanager
def relaying(relay: Relay) -> Iterator[Relay]:
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join(timeout=30)
        relay.close()


def _open_wallets(app: Marketplace, count: int) -> list[Wallet]:
    now = datetime.now(UTC)
    wallets = []
    for _ in range(count):
        wallet = Wallet.open(owner_id=uuid.uuid4(), currency="EUR", now=now)
        wallet.deposit(amount=Money(250, "EUR"), reference="psp-w", now=now)
        wallets.append(wallet)
    app.save(*wallets)
    return wallets


def _signed_up_to(source: LogSource, count: int) -> Callable[[], bool]:
    return lambda: any(h.tree_size >= count for h in read_heads(source))


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def platform(settings: Settings) -> Iterator[dict[str, Any]]:
    """A log of its own (schema, topics), its relay's settings and a command API serving it over HTTP."""
    require_services(settings, "postgres", "kafka")
    from kafka.admin import NewTopic

    from infra.adapters.kafka import make_admin

    schema, prefix = f"wt{uuid.uuid4().hex[:10]}", f"w{uuid.uuid4().hex[:8]}.bazaar."
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))

    def construct_env(self: Any, name: str, env: Any = None) -> Any:
        return Marketplace.construct_env(self, name, {**(env or {}), "POSTGRES_SCHEMA": schema})

    small = settings.model_copy(update={"pg_pool_size": 2})
    app = type(f"Witness{schema}", (Marketplace,), {"name": schema, "construct_env": construct_env})(small)
    topics = [f"{prefix}{name}" for name in names.DOMAIN_AGGREGATES] + [f"{prefix}{names.CHECKPOINTS_TOPIC}"]
    admin = make_admin(settings)
    admin.create_topics([NewTopic(topic, 1, 1) for topic in topics])
    server, thread, port = _serve(create_app(settings, app))
    try:
        yield {"app": app, "schema": schema, "prefix": prefix, "url": f"http://127.0.0.1:{port}",
               "source": LogSource(settings, schema, f"{schema}_events"),
               "conninfo": f"{settings.pg_conninfo} options='-csearch_path={schema}'"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.close()
        admin.delete_topics(topics)
        admin.close()
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_the_witness_keeps_a_live_platform_s_heads_then_refuses_a_tampered_one(
    settings: Settings, platform: dict[str, Any], tmp_path: Path
) -> None:
    app, source = platform["app"], platform["source"]
    token = tmp_path / "token"
    token.write_text(token_headers(settings, app, "auditor")["Authorization"].removeprefix("Bearer "))
    folder = tmp_path / "witness"

    def witness() -> Any:
        return CliRunner().invoke(audit_app, ["witness", "--url", platform["url"], "--dir", str(folder),
                                              "--token-file", str(token)])

    def relay() -> Relay:
        return Relay(app, settings, name="witness", topic_prefix=platform["prefix"], conninfo=platform["conninfo"],
                     checkpoint_every=1_000, checkpoint_interval_s=0.2)

    wallets: list[Wallet] = []
    with relaying(relay()):
        for round_ in range(4):  # the platform runs, the witness comes by now and then
            wallets += _open_wallets(app, 5)
            _wait(_signed_up_to(source, source.count()), 30, "a head over every event")
            result = witness()
            assert result.exit_code == 0, result.output
            assert "kept 1 new head" in result.stdout or round_ == 0
    kept = sorted((folder / "heads").glob("*.json"))
    assert len(kept) >= 4
    assert verify_store(source, public_key(settings),
                        evidence=Evidence(trusted=load_trusted_heads(folder / "heads"))).ok
    assert witness().exit_code == 0  # nothing new: still consistent

    # As a superuser: rewrite an aggregate's last event, drop the heads and tree nodes that cover it.
    victim = wallets[7]
    with psycopg.connect(platform["conninfo"], autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        row = conn.execute(
            sql.SQL("SELECT notification_id, state FROM {} WHERE originator_id = %s AND originator_version = 2")
            .format(source.events), (victim.id,)).fetchone()
        assert row is not None
        position = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE notification_id < %s").format(source.events),
                                (row[0],)).fetchone()[0]
        conn.execute(sql.SQL("UPDATE {} SET state = %s WHERE notification_id = %s").format(source.events),
                     (bytes(row[1]).replace(b"psp-w", b"psp-x"), row[0]))
        conn.execute("DELETE FROM bazaar_audit_heads WHERE tree_size > %s", (position,))
        conn.execute("DELETE FROM bazaar_audit_tree")
    # A relay restarted now refuses: the checkpoints topic still holds the head over the real event.
    refusing = relay()
    try:
        with pytest.raises(IntegrityError, match="last published"):
            refusing.acquire()
    finally:
        refusing.close()
    # With Kafka's copy of the heads gone too, the relay signs the forged log from there on.
    recreate_topic(settings, f"{platform['prefix']}{names.CHECKPOINTS_TOPIC}")
    with relaying(relay()):
        _open_wallets(app, 2)
        _wait(_signed_up_to(source, source.count()), 30, "a head over the forged log")
    refused = witness()
    assert refused.exit_code == 1 and "REFUSED" in refused.stdout, refused.output
    assert len(sorted((folder / "heads").glob("*.json"))) == len(kept)  # nothing forged was kept

    report = verify_store(source, public_key(settings), evidence=Evidence(
        trusted=load_trusted_heads(folder / "heads"),
        kafka_leaves=published_leaves(settings, platform["prefix"])))
    located = [p for p in report.problems if p.where == "trusted heads" and p.aggregate_id]
    assert [(p.aggregate_id, p.version, p.position) for p in located] == [(str(victim.id), 2, position)]
