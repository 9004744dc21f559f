"""Auditor tools on real PostgreSQL and Kafka: verify, tamper detection, proofs, replay, verify from Kafka.

Every test writes to a log of its own: a Marketplace subclass whose eventsourcing tables live in a fresh
schema (the heads table too, through search_path), so tampering as a superuser never touches the shared
log. Signed heads are made here from the store with the mapper, `event_hash` and `leaf_data`, as the
relay makes them, independently of the verifier's own fast hashing.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent
from psycopg import sql
from typer.testing import CliRunner

from commands.application import Marketplace
from commands.audit.cli import audit_app
from commands.audit.codec import StoredHasher, default_mapper, fast_event_and_hash
from commands.audit.heads import HeadStore, leaf_data, leaf_of
from commands.audit.kafka_source import verify_kafka
from commands.audit.merkle import MerkleLog, ProofError, RootBuilder, leaf_hash
from commands.audit.prove import check_proof, consistency_proof, inclusion_proof
from commands.audit.replay import replay_kafka, replay_store
from commands.audit.report import Problem, VerifyReport
from commands.audit.signing import (
    AuditError,
    generate_private_key,
    make_tree_head,
    public_key_to_b64,
    sign_tree_head,
)
from commands.audit.source import LogSource
from commands.audit.tree import append_nodes, create_tree_table
from commands.audit.verify import Evidence, verify_store
from commands.messages import to_message
from domain import escrow
from domain.chain import ChainedAggregate, event_hash
from domain.licence import Licence
from domain.listing import Listing
from domain.money import Money
from domain.trust import TrustScore
from domain.user import User
from domain.wallet import PLATFORM_OWNER_ID, Wallet
from infra.settings import Settings
from tests.support import recreate_topic, require_services

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
KEY = generate_private_key()
PUBLIC_B64 = public_key_to_b64(KEY.public_key())


# --- an isolated log ----------------------------------------------------------------------------


@dataclass
class Log:
    """A log of its own: the app, where it lives, and the events it holds by aggregate."""

    app: Marketplace
    source: LogSource
    aggregates: dict[str, list[int]] = field(default_factory=dict)
    """aggregate id -> versions, as saved."""
    kept: list[dict[str, Any]] = field(default_factory=list)
    """The signed heads as an auditor's witness kept them (documents), from the last sign_heads."""

    @property
    def table(self) -> sql.Identifier:
        return self.source.events

    def rows(self) -> list[tuple[int, str, int, str, bytes]]:
        with self.source.connect() as conn:
            query = sql.SQL(
                "SELECT notification_id, originator_id::text, originator_version, topic, state FROM {}"
                " ORDER BY notification_id"
            ).format(self.table)
            return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in conn.execute(query).fetchall()]

    def tamper(self, statement: sql.Composable, params: tuple[Any, ...] = ()) -> None:
        """Run a statement as the superuser, bypassing the append-only trigger."""
        with self.source.connect() as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(statement, params)

    def state_of(self, agg: str, version: int) -> bytes:
        with self.source.connect() as conn:
            row = conn.execute(
                sql.SQL("SELECT state FROM {} WHERE originator_id = %s AND originator_version = %s").format(
                    self.table
                ),
                (UUID(agg), version),
            ).fetchone()
        assert row is not None
        return bytes(row[0])

    def set_state(self, agg: str, version: int, state: bytes) -> None:
        self.tamper(
            sql.SQL("UPDATE {} SET state = %s WHERE originator_id = %s AND originator_version = %s").format(
                self.table
            ),
            (state, UUID(agg), version),
        )

    def position_of(self, agg: str, version: int) -> int:
        for i, row in enumerate(self.rows()):
            if row[1] == agg and row[2] == version:
                return i
        raise AssertionError("no such event")

    def sign_heads(self, sizes: list[int], key: Ed25519PrivateKey = KEY) -> None:
        """Sign heads at these sizes from the store, the relay's way (mapper, event_hash, leaf_data)."""
        mapper = self.app.mapper
        tree, nids = MerkleLog(), []
        for nid, agg, version, topic, state in self.rows():
            event = mapper.to_domain_event(StoredEvent(UUID(agg), version, topic, state))
            tree.append(leaf_hash(leaf_data(nid, event.originator_id, event.originator_version, event_hash(event))))
            nids.append(nid)
        heads = HeadStore(self.source.connect)
        signed = []
        for size in sizes:
            head = make_tree_head(key.public_key(), size, tree.root(size), int(time.time() * 1000))
            signed.append({**sign_tree_head(key, head).to_dict(), "last_notification_id": nids[size - 1]})
            heads.add(sign_tree_head(key, head), nids[size - 1])
        with self.source.connect() as conn:  # the relay's stored tree, as it appends it
            create_tree_table(conn)
            append_nodes(conn, tree, 0, nids)
        self.kept = signed

    def count(self) -> int:
        return len(self.rows())

    def last_version(self, agg: str) -> int:
        return max(self.aggregates[agg])


def _isolated_app(settings: Settings, schema: str) -> Marketplace:
    def construct_env(self: Application, name: str, env: Any = None) -> Any:
        return Marketplace.construct_env(self, name, {**(env or {}), "POSTGRES_SCHEMA": schema})

    cls = type(f"AuditT{schema}", (Marketplace,), {"name": schema, "construct_env": construct_env})
    return cls(settings)


def _save(log: Log, *aggregates: ChainedAggregate) -> None:
    pending = [(str(agg.id), [e.originator_version for e in agg.pending_events]) for agg in aggregates]
    log.app.save(*aggregates)
    for agg, versions in pending:
        log.aggregates.setdefault(agg, []).extend(versions)


def build_history(log: Log, extra_wallets: int = 12) -> None:
    """Events of every aggregate kind: wallets, a listing bought through escrow, a licence, trust, users."""
    now = T0
    buyer, seller, creator = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    wallets = {
        name: Wallet.open(owner_id=owner, currency="EUR", now=now)
        for name, owner in (("buyer", buyer), ("seller", seller), ("creator", creator),
                            ("platform", PLATFORM_OWNER_ID))
    }
    wallets["buyer"].deposit(amount=Money(50_000, "EUR"), reference="psp-1", now=now)
    _save(log, *wallets.values())
    item = Listing.draft(listing_id=uuid.uuid4(), seller_id=seller, kind="goods", title="Brass lamp",
                         description="Old lamp, works — «très bien» ✓", category="home",
                         price=Money(10_000, "EUR"), now=now, attributes={"colour": "red", "watts": 40},
                         creator_id=creator, royalty_bps=500)
    item.publish(now=now + timedelta(minutes=1))
    item.change_price(price=Money(9_000, "EUR"), now=now + timedelta(minutes=2))
    item.enrich(model_id="clip", model_version="1.2", condition_score=0.875, image_hashes=["ab12", "cd34"],
                now=now + timedelta(minutes=3))
    _save(log, item)
    placed = escrow.place_order(order_id=uuid.uuid4(), listing=item, buyer_id=buyer,
                                buyer_wallet=wallets["buyer"], fee_bps=500, now=now + timedelta(minutes=4))
    _save(log, *placed.aggregates)
    order = placed.order
    order.ship(by=seller, tracking_ref="TRACK-1", now=now + timedelta(minutes=5))
    released = escrow.confirm_delivery(order, by=buyer, buyer_wallet=wallets["buyer"],
                                       seller_wallet=wallets["seller"], platform_wallet=wallets["platform"],
                                       creator_wallet=wallets["creator"], now=now + timedelta(minutes=6))
    _save(log, *released.aggregates)
    licence = Licence.issue(licence_id=uuid.uuid4(), listing_id=item.id, licensee_id=buyer, kind="usage_metered",
                            quota=100, now=now)
    licence.record_usage(units=7, at=now, now=now + timedelta(minutes=1))
    licence.revoke(reason="abuse", now=now + timedelta(minutes=2))
    trust = TrustScore.start(user_id=seller, now=now)
    trust.record_signal(kind="review", ref="order-1", at=now, now=now, stars=5)
    user = User.register(user_id=uuid.uuid4(), role="seller", email_hash="e" * 64, encrypted_profile="c2VjcmV0",
                         key_id="k1", credential_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", now=now)
    user.change_role(role="buyer", changed_by=uuid.uuid4(), now=now + timedelta(minutes=1))
    user.change_credential(credential_hash="$argon2id$v=19$new", now=now + timedelta(minutes=2))
    _save(log, licence, trust, user)
    for i in range(extra_wallets):
        wallet = Wallet.open(owner_id=uuid.uuid4(), currency="EUR", now=now)
        for j in range(1 + i % 4):
            wallet.deposit(amount=Money(100 + j, "EUR"), reference=f"psp-{i}-{j}", now=now + timedelta(seconds=j))
        _save(log, wallet)


@pytest.fixture(scope="module")
def services(settings: Settings) -> Settings:
    require_services(settings, "postgres")
    return settings


def _drop_schema(settings: Settings, schema: str) -> None:
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def log(services: Settings) -> Iterator[Log]:
    schema = f"at{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.pg_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    app = _isolated_app(services, schema)
    made = Log(app, LogSource(services, schema, f"{schema}_events"))
    try:
        build_history(made)
        yield made
    finally:
        app.close()
        _drop_schema(services, schema)


@pytest.fixture
def signed(log: Log) -> Log:
    """The log with a head every 5 events and one at its end."""
    size = log.count()
    log.sign_heads(sorted({*range(5, size, 5), size}))
    return log


def verify(log: Log, **evidence: Any) -> VerifyReport:
    return verify_store(log.source, KEY.public_key(), evidence=Evidence(**evidence))


def cli(log: Log, *args: str) -> Any:
    options = ["--schema", log.source.schema, "--events-table", log.source.table]
    if args and args[0] == "verify" and "--from-kafka" not in args and "--topic-prefix" not in args:
        options.append("--no-checkpoints")  # this log's heads were never published
    return CliRunner().invoke(audit_app, [*args, *options], catch_exceptions=False)


def first(report: VerifyReport) -> Problem:
    assert not report.ok
    assert report.first is not None
    return report.first


def middle_event(log: Log, min_versions: int = 3) -> tuple[str, int]:
    """An aggregate with several events and one of its events that has a successor."""
    agg = next(a for a, versions in log.aggregates.items() if len(versions) >= min_versions)
    return agg, 2


# --- the untouched log --------------------------------------------------------------------------


def test_untouched_log_verifies_through_the_cli(signed: Log) -> None:
    result = cli(signed, "verify", "--public-key", PUBLIC_B64)
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout
    report = verify(signed)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.events == signed.count()
    assert report.aggregates == len(signed.aggregates)
    assert report.heads == len(range(5, report.events, 5)) + 1
    assert report.latest_head_size == report.events


def test_untouched_log_verifies_as_a_subprocess(signed: Log) -> None:
    command = [sys.executable, "-m", "commands.audit.cli", "verify", "--public-key", PUBLIC_B64,
               "--schema", signed.source.schema, "--events-table", signed.source.table, "--json",
               "--no-checkpoints"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_fast_hashes_equal_the_domain_hash_of_every_event(log: Log) -> None:
    hasher, mapper = StoredHasher(), default_mapper()
    types = set()
    for nid, agg, version, topic, state in log.rows():
        stored = StoredEvent(UUID(agg), version, topic, state)
        reference = mapper.to_domain_event(stored)
        digest, prev = hasher(agg, version, topic, state)
        assert (digest, prev) == (event_hash(reference), reference.prev_hash), topic
        decoded, same = fast_event_and_hash(stored, mapper)
        assert same == digest and vars(decoded) == vars(reference), topic
        assert leaf_of(nid, agg, version, digest) == leaf_hash(leaf_data(nid, UUID(agg), version, digest))
        types.add(topic.split(":")[1])
    assert {"Listing.Enriched", "Order.Released", "Licence.Revoked", "User.CredentialChanged"} <= types
    assert Marketplace.register_transcodings is Application.register_transcodings


def test_the_verifier_tree_is_the_rfc6962_tree() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(70)]
    sizes = [1, 2, 3, 5, 8, 13, 21, 34, 55, 64, 69, 70]
    roots = RootBuilder(sizes)
    roots.extend(leaves[:40])
    roots.extend(leaves[40:])
    tree = MerkleLog(leaves)
    assert roots.roots == {size: tree.root(size) for size in sizes}
    assert roots.root() == tree.root()


# --- tampering ----------------------------------------------------------------------------------


def test_one_changed_byte_is_named_altered(signed: Log) -> None:
    agg = next(a for a, v in signed.aggregates.items() if len(v) >= 3 and "psp-" in signed.state_of(a, 2).decode())
    state = signed.state_of(agg, 2)
    at = state.index(b'"psp-') + 5
    changed = state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :]  # one byte, still valid JSON
    signed.set_state(agg, 2, changed)
    problem = first(verify(signed))
    assert (problem.kind, problem.aggregate_id, problem.version) == ("altered", agg, 2)
    assert problem.position == signed.position_of(agg, 2)
    result = cli(signed, "verify", "--public-key", PUBLIC_B64)
    assert result.exit_code == 1
    assert "altered" in result.stdout and agg in result.stdout


def test_a_byte_that_breaks_the_json_is_named_altered(signed: Log) -> None:
    agg, version = middle_event(signed)
    state = signed.state_of(agg, version)
    signed.set_state(agg, version, b"[" + state[1:])
    problem = first(verify(signed))
    assert (problem.kind, problem.aggregate_id, problem.version) == ("altered", agg, version)
    assert "decode" in problem.detail


def test_a_changed_prev_hash_names_its_own_event(signed: Log) -> None:
    agg, version = middle_event(signed)
    state = signed.state_of(agg, version)
    at = state.index(b'"prev_hash":"') + 13
    signed.set_state(agg, version, state[:at] + (b"1" if state[at : at + 1] != b"1" else b"2") + state[at + 1 :])
    problem = first(verify(signed))
    assert (problem.kind, problem.aggregate_id, problem.version) == ("altered", agg, version)


def test_a_deleted_event_is_named_missing(signed: Log) -> None:
    agg, version = middle_event(signed)
    signed.tamper(
        sql.SQL("DELETE FROM {} WHERE originator_id = %s AND originator_version = %s").format(signed.table),
        (UUID(agg), version),
    )
    report = verify(signed)
    problem = first(report)
    assert (problem.kind, problem.aggregate_id, problem.version) == ("missing", agg, version)
    assert any(p.kind in {"missing", "root-mismatch"} and p.head_size for p in report.problems)
    result = cli(signed, "verify", "--public-key", PUBLIC_B64)
    assert result.exit_code == 1 and "missing" in result.stdout


def test_two_swapped_events_are_named_reordered(signed: Log) -> None:
    agg, _ = middle_event(signed)
    table = signed.table
    with signed.source.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        ids = dict(conn.execute(
            sql.SQL("SELECT originator_version, notification_id FROM {} WHERE originator_id = %s").format(table),
            (UUID(agg),),
        ).fetchall())
        update = sql.SQL("UPDATE {} SET notification_id = %s WHERE notification_id = %s").format(table)
        conn.execute(update, (-1, ids[2]))
        conn.execute(update, (ids[2], ids[3]))
        conn.execute(update, (ids[3], -1))
    problem = first(verify(signed))
    assert (problem.kind, problem.aggregate_id, problem.version) == ("reordered", agg, 2)
    assert problem.notification_id == ids[2]


def test_two_swapped_contents_are_named_reordered(signed: Log) -> None:
    agg, _ = middle_event(signed)
    rows = {row[2]: row for row in signed.rows() if row[1] == agg}
    update = sql.SQL(
        "UPDATE {} SET topic = %s, state = %s WHERE originator_id = %s AND originator_version = %s"
    ).format(signed.table)
    signed.tamper(update, (rows[3][3], rows[3][4], UUID(agg), 2))
    signed.tamper(update, (rows[2][3], rows[2][4], UUID(agg), 3))
    problem = first(verify(signed))
    assert (problem.kind, problem.aggregate_id, problem.version) == ("reordered", agg, 2)


def test_a_changed_last_event_is_caught_by_the_signed_root(log: Log) -> None:
    size = log.count()
    log.sign_heads(list(range(1, size + 1)))  # a head at every size pins the leaf exactly
    agg = next(a for a, v in log.aggregates.items() if len(v) >= 2 and "psp-" in log.state_of(a, max(v)).decode())
    version = log.last_version(agg)
    state = log.state_of(agg, version)
    at = state.index(b'"psp-') + 5
    log.set_state(agg, version, state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :])
    report = verify(log)
    assert (first(report).aggregate_id, first(report).version) == (agg, version)
    problem = next(p for p in report.problems if "subtree comparison" in p.detail)
    assert (problem.kind, problem.aggregate_id, problem.version) == ("altered", agg, version)
    assert problem.position == log.position_of(agg, version)
    assert problem.head_size == problem.position + 1 and problem.where == "signed heads"
    assert not [p for p in report.problems if p.kind in {"missing", "reordered"}]


def test_a_changed_last_event_under_sparse_heads_is_named_by_subtree_comparison(signed: Log) -> None:
    # What the issue found: only "root mismatch, N candidate events". The stored tree reproduces the signed
    # root, so descending into the differing subtrees names the event.
    agg = next(a for a, v in signed.aggregates.items() if "psp-" in signed.state_of(a, max(v)).decode())
    version = signed.last_version(agg)
    state = signed.state_of(agg, version)
    at = state.index(b'"psp-') + 5
    signed.set_state(agg, version, state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :])
    report = verify(signed)
    problem = first(report)
    assert (problem.kind, problem.aggregate_id, problem.version, problem.position) == (
        "altered", agg, version, signed.position_of(agg, version))
    assert "subtree comparison" in problem.detail
    assert any(p.kind == "root-mismatch" for p in report.problems)


def test_a_deleted_last_event_is_missing(signed: Log) -> None:
    agg = next(a for a, v in signed.aggregates.items() if len(v) >= 2)
    version = signed.last_version(agg)
    signed.tamper(
        sql.SQL("DELETE FROM {} WHERE originator_id = %s AND originator_version = %s").format(signed.table),
        (UUID(agg), version),
    )
    problem = first(verify(signed))
    assert problem.kind == "missing"
    assert problem.head_size is not None


def test_a_head_signed_by_another_key_is_rejected(signed: Log) -> None:
    size = signed.count()
    signed.tamper(sql.SQL("DELETE FROM {}").format(sql.Identifier(signed.source.schema, "bazaar_audit_heads")))
    signed.sign_heads([size], key=generate_private_key())
    problem = first(verify(signed, max_unsigned_age_s=None))
    assert (problem.kind, problem.head_size) == ("bad-signature", size)
    # With no head the platform key signed, every (old) event is an unsigned tail.
    assert "unsigned-tail" in {p.kind for p in verify(signed).problems}
    result = cli(signed, "verify", "--public-key", PUBLIC_B64)
    assert result.exit_code == 1 and "bad-signature" in result.stdout


# --- proofs -------------------------------------------------------------------------------------


def _kept_head(proof: dict[str, Any]) -> dict[str, Any]:
    return proof["tree_head"]


def test_inclusion_proofs_of_random_events_check(signed: Log) -> None:
    rows = signed.rows()
    for nid, agg, version, _, _ in random.Random(7).sample(rows, 6):
        ref = str(nid) if nid % 2 else f"{agg}:{version}"
        proof = inclusion_proof(signed.source, ref)
        assert proof["event"]["notification_id"] == nid
        summary = check_proof(proof, _kept_head(proof), PUBLIC_B64, event=proof["event"])
        assert "inclusion proof OK" in summary
    # against an older head too
    proof = inclusion_proof(signed.source, str(rows[2][0]), head_size=5)
    assert proof["tree_size"] == 5
    check_proof(proof, _kept_head(proof), PUBLIC_B64, event=proof["event"])


def test_the_proof_of_an_altered_event_fails(signed: Log) -> None:
    agg, version = middle_event(signed)
    kept = inclusion_proof(signed.source, f"{agg}:{version}")
    event = kept["event"]
    state = signed.state_of(agg, version)
    at = state.index(b'"_data_":"') + 13  # the year's last digit: still a valid time
    signed.set_state(agg, version, state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :])
    altered = inclusion_proof(signed.source, f"{agg}:{version}")
    with pytest.raises(AuditError):
        check_proof(altered, _kept_head(kept), PUBLIC_B64)
    # the event the auditor holds no longer matches what the platform now proves
    with pytest.raises(AuditError):
        check_proof(altered, _kept_head(kept), PUBLIC_B64, event=event)
    # and an untouched proof for another event is not accepted for the held one
    other = inclusion_proof(signed.source, "1")
    with pytest.raises(ProofError):
        check_proof(other, _kept_head(other), PUBLIC_B64, event=event)


def test_consistency_proofs_check_and_fail_once_the_stored_tree_is_rewritten(signed: Log) -> None:
    size = signed.count()
    old, new = 10, size
    proof = consistency_proof(signed.source, old, new)
    summary = check_proof(proof, proof["tree_head"], PUBLIC_B64, earlier_head=proof["first_head"])
    assert "consistency proof OK" in summary
    kept_old, kept_new = proof["first_head"], proof["tree_head"]
    # Proofs come from the relay's stored nodes: rewriting one of them breaks every proof through it.
    signed.tamper(sql.SQL("UPDATE {} SET hash = sha256(hash) WHERE level = 3 AND position = 0").format(
        sql.Identifier(signed.source.schema, "bazaar_audit_tree")))
    rewritten = consistency_proof(signed.source, old, new)
    with pytest.raises(AuditError):
        check_proof(rewritten, kept_new, PUBLIC_B64, earlier_head=kept_old)


def test_proofs_through_the_cli(signed: Log, tmp_path: Path) -> None:
    proof_file, head_file, key_file = tmp_path / "proof.json", tmp_path / "head.json", tmp_path / "key.pub"
    result = cli(signed, "prove", "3", "-o", str(proof_file))
    assert result.exit_code == 0, result.output
    proof = json.loads(proof_file.read_text())
    head_file.write_text(json.dumps(proof["tree_head"]))
    key_file.write_text(PUBLIC_B64 + "\n")
    checked = CliRunner().invoke(audit_app, ["check-proof", str(proof_file), "--head", str(head_file),
                                             "--public-key", str(key_file), "--event", str(proof_file)])
    assert checked.exit_code == 0, checked.output
    assert "inclusion proof OK" in checked.stdout
    other_key = public_key_to_b64(generate_private_key().public_key())
    rejected = CliRunner().invoke(audit_app, ["check-proof", str(proof_file), "--head", str(head_file),
                                              "--public-key", other_key])
    assert rejected.exit_code == 1 and "REJECTED" in rejected.stdout
    consistency_file = tmp_path / "consistency.json"
    result = cli(signed, "consistency", "5", str(signed.count()), "-o", str(consistency_file))
    assert result.exit_code == 0, result.output
    doc = json.loads(consistency_file.read_text())
    old_file = tmp_path / "old.json"
    old_file.write_text(json.dumps(doc["first_head"]))
    head_file.write_text(json.dumps(doc["tree_head"]))
    checked = CliRunner().invoke(audit_app, ["check-proof", str(consistency_file), "--head", str(head_file),
                                             "--public-key", PUBLIC_B64, "--earlier-head", str(old_file)])
    assert checked.exit_code == 0, checked.output
    heads = cli(signed, "heads", "--public-key", PUBLIC_B64, "--json")
    assert heads.exit_code == 0 and len(json.loads(heads.stdout)) >= 2


# --- replay -------------------------------------------------------------------------------------


def test_replay_from_the_store_matches_and_then_finds_a_difference(signed: Log) -> None:
    report = replay_store(signed.source)
    assert report.ok, [d.describe() for d in report.differences[:5]]
    assert report.events == signed.count() and report.aggregates == len(signed.aggregates)
    result = cli(signed, "replay")
    assert result.exit_code == 0, result.output
    agg, _ = middle_event(signed)
    table = signed.table
    with signed.source.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        ids = dict(conn.execute(
            sql.SQL("SELECT originator_version, notification_id FROM {} WHERE originator_id = %s").format(table),
            (UUID(agg),),
        ).fetchall())
        update = sql.SQL("UPDATE {} SET notification_id = %s WHERE notification_id = %s").format(table)
        conn.execute(update, (-1, ids[2]))
        conn.execute(update, (ids[2], ids[3]))
        conn.execute(update, (ids[3], -1))
    tampered = replay_store(signed.source)
    assert [d.aggregate_id for d in tampered.differences] == [agg]
    result = cli(signed, "replay")
    assert result.exit_code == 1 and agg in result.stdout


def test_replay_reports_a_store_that_no_longer_folds(signed: Log) -> None:
    agg, version = middle_event(signed)
    signed.tamper(
        sql.SQL("DELETE FROM {} WHERE originator_id = %s AND originator_version = %s").format(signed.table),
        (UUID(agg), version),
    )
    report = replay_store(signed.source)
    assert {d.aggregate_id for d in report.differences} == {agg}


# --- from Kafka ---------------------------------------------------------------------------------


@pytest.fixture
def kafka_prefix(services: Settings) -> Iterator[str]:
    require_services(services, "kafka")
    from kafka.admin import NewTopic

    from infra.adapters.kafka import make_admin

    prefix = f"audit{uuid.uuid4().hex[:10]}."
    names = [f"{prefix}{a}" for a in ("listing", "order", "wallet", "licence", "trust", "user")]
    admin = make_admin(services)
    try:
        admin.create_topics([NewTopic(n, 3, 1) for n in names] + [NewTopic(f"{prefix}audit.checkpoints", 1, 1)])
        yield prefix
    finally:
        admin.delete_topics([*names, f"{prefix}audit.checkpoints"])
        admin.close()


def publish(settings: Settings, log: Log, prefix: str, *, resend: int = 0,
            alter: tuple[str, int] | None = None) -> None:
    """Publish the log as the relay does (plus re-sends of the first events, or one altered message)."""
    from infra.adapters.kafka import make_producer

    mapper = log.app.mapper
    producer = make_producer(settings, client_id="audit-test")
    rows = log.rows()
    try:
        for nid, agg, version, topic, state in [*rows, *rows[:resend]]:
            event = mapper.to_domain_event(StoredEvent(UUID(agg), version, topic, state))
            message = to_message(event, nid, topic_prefix=prefix)
            value = message.value
            if alter == (agg, version):
                value = value.replace(b'"reference":"psp-', b'"reference":"PSP-')
            producer.send(message.topic, key=message.key, value=value, headers=message.headers)
        tree = MerkleLog()
        for nid, agg, version, topic, state in rows:
            event = mapper.to_domain_event(StoredEvent(UUID(agg), version, topic, state))
            tree.append(leaf_hash(leaf_data(nid, event.originator_id, version, event_hash(event))))
        head = sign_tree_head(KEY, make_tree_head(KEY.public_key(), tree.size, tree.root(), 1))
        value = json.dumps({**head.to_dict(), "last_notification_id": rows[-1][0]}).encode()
        producer.send(f"{prefix}audit.checkpoints", value=value)
        producer.send(f"{prefix}audit.checkpoints", value=value)  # a re-sent head is the same head
        producer.flush(30)
    finally:
        producer.close()


def test_verify_and_replay_from_kafka(services: Settings, log: Log, kafka_prefix: str) -> None:
    publish(services, log, kafka_prefix, resend=4)
    report = verify_kafka(services, KEY.public_key(), topic_prefix=kafka_prefix)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.events == log.count()
    assert report.duplicates_skipped == 4
    assert report.unverifiable == 2  # registered + credential changed: the credential hash is null
    assert report.heads == 1 and report.latest_head_size == log.count()
    result = cli(log, "verify", "--from-kafka", "--topic-prefix", kafka_prefix, "--public-key", PUBLIC_B64)
    assert result.exit_code == 0, result.output
    replayed = replay_kafka(log.source, topic_prefix=kafka_prefix)
    assert replayed.ok, [d.describe() for d in replayed.differences[:5]]
    assert replayed.duplicates_skipped == 4 and replayed.redacted == 2
    assert replayed.aggregates == len(log.aggregates)
    from infra.data_teams import live_partitions

    assert live_partitions(services, [f"{kafka_prefix}wallet", "no.such.topic"]) == {f"{kafka_prefix}wallet": 3}


def test_verify_from_kafka_names_an_altered_message(services: Settings, log: Log, kafka_prefix: str) -> None:
    agg = next(a for a, v in log.aggregates.items() if len(v) >= 3 and "psp-" in log.state_of(a, 2).decode())
    publish(services, log, kafka_prefix, alter=(agg, 2))
    report = verify_kafka(services, KEY.public_key(), topic_prefix=kafka_prefix)
    problem = first(report)
    assert (problem.kind, problem.aggregate_id, problem.version) == ("altered", agg, 2)
    assert problem.where and problem.where.startswith(f"{kafka_prefix}wallet[")
    assert any(p.kind == "root-mismatch" for p in report.problems)


# --- against what the auditor kept ----------------------------------------------------------------


def keep_heads(log: Log, folder: Path) -> Path:
    """The heads as a witness keeps them: one JSON file each."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc in log.kept:
        (folder / f"{doc['tree_size']:012d}.json").write_text(json.dumps(doc))
    return folder


def trusted(log: Log, folder: Path) -> list[Any]:
    from commands.audit.headcheck import load_trusted_heads

    return load_trusted_heads(keep_heads(log, folder))


def delete_heads_from(log: Log, position: int) -> None:
    """As a superuser: drop every stored head that covers the event at this position."""
    log.tamper(sql.SQL("DELETE FROM {} WHERE tree_size > %s").format(
        sql.Identifier(log.source.schema, "bazaar_audit_heads")), (position,))


def from_trusted(report: VerifyReport) -> Problem:
    found = [p for p in report.problems if p.where == "trusted heads" and "subtree comparison" in p.detail]
    assert found, [p.describe() for p in report.problems]
    return found[0]


def test_a_rewritten_last_event_with_its_heads_deleted_is_named_by_the_kept_heads(
    signed: Log, tmp_path: Path
) -> None:
    agg = next(a for a, v in signed.aggregates.items() if "psp-" in signed.state_of(a, max(v)).decode())
    version = signed.last_version(agg)
    position = signed.position_of(agg, version)
    folder = keep_heads(signed, tmp_path / "kept")
    state = signed.state_of(agg, version)
    at = state.index(b'"psp-') + 5
    signed.set_state(agg, version, state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :])
    delete_heads_from(signed, position)
    assert verify(signed, max_unsigned_age_s=None).ok  # what the issue found: the store alone says nothing

    problem = from_trusted(verify(signed, trusted=trusted(signed, tmp_path / "kept")))
    assert (problem.kind, problem.aggregate_id, problem.version, problem.position) == (
        "altered", agg, version, position)
    assert "subtree comparison" in problem.detail
    result = cli(signed, "verify", "--public-key", PUBLIC_B64, "--trusted-heads", str(folder))
    assert result.exit_code == 1 and agg in result.stdout
    assert "a head the auditor kept is missing from the store" in result.stdout


def test_swapped_notification_ids_are_named_by_the_kept_heads(signed: Log, tmp_path: Path) -> None:
    rows = signed.rows()
    # Two neighbours of different aggregates: no chain notices their swap, only the tree.
    i = next(i for i in range(10, len(rows) - 1) if rows[i][1] != rows[i + 1][1])
    update = sql.SQL("UPDATE {} SET notification_id = %s WHERE notification_id = %s").format(signed.table)
    with signed.source.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(update, (-1, rows[i][0]))
        conn.execute(update, (rows[i][0], rows[i + 1][0]))
        conn.execute(update, (rows[i + 1][0], -1))
    problem = from_trusted(verify(signed, trusted=trusted(signed, tmp_path / "kept")))
    assert (problem.aggregate_id, problem.version, problem.position) == (rows[i + 1][1], rows[i + 1][2], i)


@pytest.mark.parametrize("tampering", ["byte", "delete"])
def test_each_rewrite_fails_against_the_kept_heads_with_exit_1(signed: Log, tmp_path: Path, tampering: str) -> None:
    agg, version = middle_event(signed)
    position = signed.position_of(agg, version)
    if tampering == "byte":
        state = signed.state_of(agg, version)
        at = state.index(b'"_data_":"') + 13
        signed.set_state(agg, version, state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :])
    else:
        signed.tamper(sql.SQL("DELETE FROM {} WHERE originator_id = %s AND originator_version = %s").format(
            signed.table), (UUID(agg), version))
    report = verify(signed, trusted=trusted(signed, tmp_path / "kept"))
    if tampering == "byte":
        assert (first(report).kind, first(report).aggregate_id, first(report).version, first(report).position) == (
            "altered", agg, version, position)
    else:
        assert ("missing", agg, version) in {(p.kind, p.aggregate_id, p.version) for p in report.problems}
        # The kept heads place the event that is gone where it was signed.
        assert (from_trusted(report).kind, from_trusted(report).position) == ("missing", position)
    result = cli(signed, "verify", "--public-key", PUBLIC_B64, "--trusted-heads", str(tmp_path / "kept"))
    assert result.exit_code == 1 and agg in result.stdout


def test_a_rewritten_head_row_is_caught(signed: Log, tmp_path: Path) -> None:
    heads = sql.Identifier(signed.source.schema, "bazaar_audit_heads")
    # The trigger refuses it to anyone not bypassing triggers.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), signed.source.connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {}").format(heads))
    size = signed.count()
    other_root = sign_tree_head(KEY, make_tree_head(KEY.public_key(), size, b"\x07" * 32, 1)).to_dict()
    signed.tamper(sql.SQL("UPDATE {} SET head = %s WHERE tree_size = %s").format(heads),
                  (json.dumps({**other_root, "signature": signed.kept[-1]["signature"]}), size))
    report = verify(signed, trusted=trusted(signed, tmp_path / "kept"))
    kinds = {(p.kind, p.head_size) for p in report.problems}
    assert ("bad-signature", size) in kinds and ("head-mismatch", size) in kinds
    result = cli(signed, "verify", "--public-key", PUBLIC_B64, "--trusted-heads", str(tmp_path / "kept"))
    assert result.exit_code == 1 and "differs from the store's" in result.stdout


def forge_append(log: Log, age_s: float) -> tuple[str, int]:
    """As a superuser: append a forged next event to an aggregate, with a valid prev_hash, dated age_s ago."""
    agg = next(a for a, v in log.aggregates.items() if "psp-" in log.state_of(a, max(v)).decode())
    version = log.last_version(agg)
    hasher = StoredHasher()
    rows = {(r[1], r[2]): r for r in log.rows()}
    _, _, _, topic, state = rows[(agg, version)]
    digest, _ = hasher(agg, version, topic, state)
    doc = json.loads(state)
    doc["prev_hash"] = digest
    doc["reference"] = "psp-forged"
    doc["timestamp"]["_data_"] = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat()
    log.tamper(sql.SQL("INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)")
               .format(log.table), (UUID(agg), version + 1, topic, json.dumps(doc).encode()))
    return agg, version + 1


def test_a_forged_append_after_the_latest_head_fails_once_older_than_the_signing_interval(signed: Log) -> None:
    agg, version = forge_append(signed, age_s=60)
    report = verify(signed)
    problem = first(report)
    assert (problem.kind, problem.aggregate_id, problem.version, problem.position) == (
        "unsigned-tail", agg, version, signed.count() - 1)
    result = cli(signed, "verify", "--public-key", PUBLIC_B64)
    assert result.exit_code == 1 and "unsigned-tail" in result.stdout
    accepted = cli(signed, "verify", "--public-key", PUBLIC_B64, "--allow-unsigned-tail")
    assert accepted.exit_code == 0 and "--allow-unsigned-tail" in accepted.stdout


def test_a_fresh_unsigned_event_is_within_the_grace(signed: Log) -> None:
    forge_append(signed, age_s=1)
    report = verify(signed)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.unsigned_tail == 1


def publish_heads(settings: Settings, docs: list[dict[str, Any]], prefix: str) -> None:
    from infra.adapters.kafka import make_producer

    producer = make_producer(settings, client_id="audit-test-heads")
    try:
        for doc in docs:
            producer.send(f"{prefix}audit.checkpoints", value=json.dumps(doc).encode())
        producer.flush(30)
    finally:
        producer.close()


def test_deleted_checkpoint_messages_and_deleted_head_rows_are_caught(
    services: Settings, signed: Log, kafka_prefix: str
) -> None:
    from commands.audit.kafka_source import read_checkpoints

    publish_heads(services, signed.kept, kafka_prefix)
    assert verify(signed, published=read_checkpoints(services, kafka_prefix)).ok
    # The topic's latest messages deleted (a topic cannot drop its tail: recreate it without them).
    recreate_topic(services, f"{kafka_prefix}audit.checkpoints")
    publish_heads(services, signed.kept[:-2], kafka_prefix)
    report = verify(signed, published=read_checkpoints(services, kafka_prefix))
    gone = {p.head_size for p in report.problems if p.kind == "head-mismatch"}
    assert gone == {doc["tree_size"] for doc in signed.kept[-2:]}
    result = cli(signed, "verify", "--public-key", PUBLIC_B64, "--topic-prefix", kafka_prefix)
    assert result.exit_code == 1 and "missing from the checkpoints topic" in result.stdout
    # A head row deleted from the store while the topic keeps it.
    delete_heads_from(signed, signed.kept[0]["tree_size"])
    report = verify(signed, published=read_checkpoints(services, kafka_prefix))
    assert "a head on the checkpoints topic is missing from the store (its row was deleted)" in {
        p.detail for p in report.problems}


def test_cross_check_names_the_event_that_differs_from_kafka(
    services: Settings, signed: Log, kafka_prefix: str, tmp_path: Path
) -> None:
    from commands.audit.kafka_source import published_leaves

    publish(services, signed, kafka_prefix)
    assert verify(signed, kafka_leaves=published_leaves(services, kafka_prefix)).ok
    # The last event of an aggregate rewritten, its heads and the stored tree deleted: only Kafka and the
    # kept heads remain, and together they name the event.
    agg = next(a for a, v in signed.aggregates.items() if "psp-" in signed.state_of(a, max(v)).decode())
    version = signed.last_version(agg)
    position = signed.position_of(agg, version)
    state = signed.state_of(agg, version)
    at = state.index(b'"psp-') + 5
    signed.set_state(agg, version, state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :])
    delete_heads_from(signed, position)
    signed.tamper(sql.SQL("DELETE FROM {}").format(sql.Identifier(signed.source.schema, "bazaar_audit_tree")))
    leaves = published_leaves(services, kafka_prefix)
    report = verify(signed, kafka_leaves=leaves, trusted=trusted(signed, tmp_path / "kept"))
    crossed = [p for p in report.problems if p.kind == "kafka-mismatch"]
    assert [(p.aggregate_id, p.version, p.position) for p in crossed] == [(agg, version, position)]
    located = from_trusted(report)
    assert (located.aggregate_id, located.version, located.position) == (agg, version, position)
    assert "Kafka's copy" in located.detail
    result = cli(signed, "verify", "--public-key", PUBLIC_B64, "--topic-prefix", kafka_prefix, "--no-checkpoints",
                 "--cross-check")
    assert result.exit_code == 1 and "kafka-mismatch" in result.stdout and agg in result.stdout
