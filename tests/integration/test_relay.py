"""The relay against the real PostgreSQL and Kafka: order, crashes, a broker restart, two relays, checkpoints.

Every test has an events table (its own Application name), a schema for the relay's tables (position and
signed heads, via search_path) and topics under its own prefix, all dropped afterwards. Consumers here
apply an event only when its version is the aggregate's next one, as the design asks of every consumer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from commands.application import Marketplace
from commands.audit.heads import HeadStore, leaf_data
from commands.audit.keys import public_key
from commands.audit.merkle import MerkleLog, leaf_hash, verify_consistency
from commands.audit.signing import SignatureError, SignedTreeHead, generate_private_key, verify_tree_head
from commands.audit.tree import TREE_TABLE
from commands.relay import LOCK_KEY_PREFIX, POSITIONS_TABLE, IntegrityError, LockLostError, Relay
from domain.chain import event_hash
from domain.money import Money
from domain.wallet import Wallet
from infra.adapters.kafka import make_admin, make_consumer
from infra.services.kafka import KafkaService
from infra.settings import REPO_ROOT, Settings
from schemas.messages import decode_event, header_value
from tests.support import require_services

pytestmark = pytest.mark.integration

WALLET_PARTITIONS = 3
SAVE_CHUNK = 50  # wallets per app.save: one transaction of about a thousand events

RELAY_CHILD = """
import json, sys
from commands.application import Marketplace
from commands.relay import run_relay
from infra.logging import configure_logging
from infra.settings import Settings

cfg = json.loads(sys.argv[1])
configure_logging()
settings = Settings(pg_pool_size=2)
app = type(cfg["cls"], (Marketplace,), {"name": cfg["app"]})(settings)
run_relay(settings, app=app, **cfg["options"])
"""


# --- isolation -----------------------------------------------------------------------------------------


@dataclass
class Isolated:
    """One test's events table, relay schema and topics."""

    settings: Settings
    tag: str
    app: Marketplace
    admin: KafkaAdminClient
    tmp: Path
    wallets: list[Wallet] = field(default_factory=list)

    @property
    def app_cls_name(self) -> str:
        return f"RelayTest{self.tag}"

    @property
    def app_name(self) -> str:
        return f"rt{self.tag}"

    @property
    def schema(self) -> str:
        return f"rt{self.tag}"

    @property
    def prefix(self) -> str:
        return f"t{self.tag}.bazaar."

    @property
    def wallet_topic(self) -> str:
        return f"{self.prefix}wallet"

    @property
    def checkpoints_topic(self) -> str:
        return f"{self.prefix}audit.checkpoints"

    @property
    def conninfo(self) -> str:
        return f"{self.settings.pg_conninfo} options='-csearch_path={self.schema}'"

    def relay(self, **options: Any) -> Relay:
        """An in-process relay on this test's store, topics and tables."""
        options = {"name": "test", "topic_prefix": self.prefix, "conninfo": self.conninfo, **options}
        return Relay(self.app, self.settings, **options)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, autocommit=True)

    def position(self, name: str = "test") -> tuple[int, int]:
        """(notification id, tree size) recorded for a relay name; (0, 0) before it first ran."""
        with self.connect() as conn:
            try:
                row = conn.execute(
                    f"SELECT notification_id, tree_size FROM {POSITIONS_TABLE} WHERE name = %s", (name,)
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                return 0, 0
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def last_notification_id(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    # Events: wallets opened, then deposits; each wallet's version is what Kafka must end with.

    def open_wallets(self, count: int, deposits: int) -> None:
        now = datetime.now(UTC)
        fresh = []
        for _ in range(count):
            wallet = Wallet.open(owner_id=uuid.uuid4(), currency="EUR", now=now)
            for n in range(deposits):
                wallet.deposit(amount=Money(100 + n, "EUR"), reference=f"r{n}", now=now)
            fresh.append(wallet)
        self._save(fresh)
        self.wallets.extend(fresh)

    def deposit_everywhere(self, deposits: int) -> None:
        now = datetime.now(UTC)
        for wallet in self.wallets:
            for n in range(deposits):
                wallet.deposit(amount=Money(7 + n, "EUR"), reference=f"more{n}", now=now)
        self._save(self.wallets)

    def _save(self, wallets: list[Wallet]) -> None:
        for start in range(0, len(wallets), SAVE_CHUNK):
            self.app.save(*wallets[start : start + SAVE_CHUNK])

    def expected_versions(self) -> dict[str, int]:
        return {str(wallet.id): wallet.version for wallet in self.wallets}

    def event_count(self) -> int:
        return sum(self.expected_versions().values())

    # Relay processes: `python -c` running run_relay on this test's store, logs as JSON lines.

    def spawn_relay(self, label: str, **options: Any) -> RelayProcess:
        cfg = {
            "cls": self.app_cls_name,
            "app": self.app_name,
            "options": {"name": "test", "topic_prefix": self.prefix, "conninfo": self.conninfo, **options},
        }
        log_path = self.tmp / f"relay-{label}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", RELAY_CHILD, json.dumps(cfg)],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
        return RelayProcess(label, proc, log_path)


@dataclass
class RelayProcess:
    label: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def events(self) -> list[str]:
        """The `event` field of every JSON log line so far."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line)["event"])
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def acquired(self) -> bool:
        return "relay.lock.acquired" in self.events()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        """SIGTERM and wait: the relay finishes its batch, flushes, releases the lock and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def delete_topics(settings: Settings, topics: list[str]) -> None:
    """Drop test topics with a fresh admin client: one made before a broker restart may hold a dead link."""
    for attempt in Retrying(retry=retry_if_exception_type(KafkaError), stop=stop_after_delay(60),
                            wait=wait_fixed(1), reraise=True):
        with attempt:
            admin = make_admin(settings)
            try:
                left = [topic for topic in topics if topic in set(admin.list_topics())]
                if left:
                    admin.delete_topics(left)
            finally:
                admin.close()


@pytest.fixture
def iso(settings: Settings, tmp_path: Path) -> Iterator[Isolated]:
    require_services(settings, "postgres", "kafka")
    tag = uuid.uuid4().hex[:10]
    app_cls = type(f"RelayTest{tag}", (Marketplace,), {"name": f"rt{tag}"})
    small = settings.model_copy(update={"pg_pool_size": 2})
    app = app_cls(small)
    admin = make_admin(settings)
    isolated = Isolated(small, tag, app, admin, tmp_path)
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {isolated.schema}")
    admin.create_topics(
        {
            isolated.wallet_topic: {"num_partitions": WALLET_PARTITIONS, "replication_factor": 1},
            isolated.checkpoints_topic: {"num_partitions": 1, "replication_factor": 1},
        },
        wait_for_metadata=True,
    )
    try:
        yield isolated
    finally:
        app.close()
        admin.close()
        delete_topics(settings, [isolated.wallet_topic, isolated.checkpoints_topic])
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {isolated.schema} CASCADE")
            conn.execute(f"DROP TABLE IF EXISTS {isolated.app_name}_events, {isolated.app_name}_events_idempotency")


# --- helpers -------------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def running(relay: Relay) -> Iterator[Relay]:
    """Relay.run in a thread; stopped (finish the batch, final checkpoint, unlock) on exit."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            relay.run(stop)
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="relay-under-test", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join(timeout=60)
        relay.close()
    assert not thread.is_alive(), "the relay did not stop"
    assert not errors, f"the relay failed: {errors[0]!r}"


def caught_up(iso: Isolated, name: str = "test") -> Callable[[], bool]:
    return lambda: iso.position(name)[0] == iso.last_notification_id()


def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record of a topic from offset 0 to its current end, in order within each partition."""
    consumer = make_consumer(settings, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "reading the topic took too long"
            for batch in consumer.poll(timeout_ms=500, max_records=10_000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@dataclass
class Delivery:
    """What a consumer that applies (aggregate id, version) at most once saw."""

    applied: dict[str, list[int]]
    duplicates: int
    ahead: int  # a version past the next one: skipped, it comes again after its predecessor
    notification_ids: set[int]


def consume_in_version_order(records: list[ConsumerRecord]) -> Delivery:
    """Apply each event iff its version is the aggregate's next one, as every consumer does."""
    applied: dict[str, list[int]] = defaultdict(list)
    duplicates = ahead = 0
    nids: set[int] = set()
    for record in records:
        event = decode_event(record.value, record.headers)
        aggregate = str(event.aggregate_id)
        assert record.key == aggregate.encode(), "the key is the aggregate id"
        nids.add(int(header_value(record.headers, "notification_id") or 0))
        last = applied[aggregate][-1] if applied[aggregate] else 0
        if event.version == last + 1:
            applied[aggregate].append(event.version)
        elif event.version <= last:
            duplicates += 1
        else:
            ahead += 1
    return Delivery(dict(applied), duplicates, ahead, nids)


def assert_complete(delivery: Delivery, iso: Isolated) -> None:
    """Every wallet reached its last version, and every stored notification appeared."""
    expected = iso.expected_versions()
    assert set(delivery.applied) == set(expected)
    for aggregate, version in expected.items():
        assert delivery.applied[aggregate] == list(range(1, version + 1)), aggregate
    stored = {n.id for n in iso.app.recorder.select_notifications(0, 10**9, inclusive_of_start=False)}
    assert delivery.notification_ids == stored


def rewinds_per_partition(records: list[ConsumerRecord]) -> dict[int, int]:
    """How often notification ids step back within a partition: once per takeover or restart at most.

    One publisher sends in notification order; a restarted one re-sends its last unacknowledged batch
    once. Two publishers at once would step back again and again.
    """
    last: dict[int, int] = {}
    rewinds: dict[int, int] = defaultdict(int)
    for record in records:
        nid = int(header_value(record.headers, "notification_id") or 0)
        if record.partition in last and nid <= last[record.partition]:
            rewinds[record.partition] += 1
        last[record.partition] = nid
    return dict(rewinds)


def stored_leaves(iso: Isolated) -> tuple[list[bytes], list[int]]:
    """Leaf hashes recomputed from the store alone, and the notification id of each leaf."""
    leaves, nids = [], []
    for notification in iso.app.recorder.select_notifications(0, 10**9, inclusive_of_start=False):
        event = iso.app.mapper.to_domain_event(notification)
        data = leaf_data(notification.id, event.originator_id, event.originator_version, event_hash(event))
        leaves.append(leaf_hash(data))
        nids.append(notification.id)
    return leaves, nids


def stored_heads(iso: Isolated) -> list[tuple[SignedTreeHead, int]]:
    @contextmanager
    def connect() -> Iterator[psycopg.Connection[Any]]:
        with iso.connect() as conn:
            yield conn

    return HeadStore(connect).all()


def assert_heads_match_store(iso: Isolated, heads: list[tuple[SignedTreeHead, int]]) -> None:
    """Each head is signed by the platform key and commits to the store's own events in order."""
    key = public_key(iso.settings)
    leaves, nids = stored_leaves(iso)
    log = MerkleLog(leaves)
    for signed, last_nid in heads:
        verify_tree_head(key, signed)
        assert signed.size <= len(leaves)
        assert signed.root_hash == log.root(signed.size), f"root at size {signed.size}"
        assert last_nid == nids[signed.size - 1]
    for (older, _), (newer, _) in zip(heads, heads[1:], strict=False):
        if older.size < newer.size:
            proof = log.consistency_proof(older.size, newer.size)
            verify_consistency(older.size, newer.size, proof, older.root_hash, newer.root_hash)


def assert_stored_tree_is_the_store_s(iso: Isolated, size: int) -> None:
    """The relay's stored nodes are exactly the nodes of the store's tree, each leaf with its event's id."""
    leaves, nids = stored_leaves(iso)
    expected = MerkleLog(leaves[:size])
    with iso.connect() as conn:
        rows = conn.execute(f"SELECT level, position, hash, notification_id FROM {TREE_TABLE}").fetchall()
    assert {(level, position): bytes(h) for level, position, h, _ in rows} == {
        (level, position): h for level, position, h in expected.nodes_completed(0)}
    assert sorted((position, nid) for level, position, _, nid in rows if level == 0) == list(
        enumerate(nids[:size]))


# --- tests ---------------------------------------------------------------------------------------------


def test_ten_thousand_events_arrive_once_in_order(iso: Isolated) -> None:
    iso.open_wallets(500, deposits=19)  # 500 wallets x 20 events
    assert iso.event_count() == 10_000

    started = time.monotonic()
    with running(iso.relay()):
        wait_for(caught_up(iso), 60, "the relay to publish 10,000 events")
    elapsed = time.monotonic() - started

    records = read_topic(iso.settings, iso.wallet_topic)
    assert len(records) == 10_000, "exactly once: no duplicates, none missing"
    delivery = consume_in_version_order(records)
    assert delivery.duplicates == 0 and delivery.ahead == 0
    assert_complete(delivery, iso)

    partitions: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        partitions[record.key].add(record.partition)
        # Same partition as Kafka's default (murmur2) partitioner would choose for the key.
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % WALLET_PARTITIONS
        assert header_value(record.headers, "event_type") in {"Wallet.Opened", "Wallet.Deposited"}
    assert all(len(found) == 1 for found in partitions.values())
    assert len(set().union(*partitions.values())) == WALLET_PARTITIONS
    assert rewinds_per_partition(records) == {}
    assert iso.position() == (iso.last_notification_id(), 10_000)
    print(f"relayed 10,000 events in {elapsed:.1f} s")


def test_kill_9_mid_run_then_restart_delivers_everything(iso: Isolated) -> None:
    iso.open_wallets(500, deposits=19)
    total = iso.last_notification_id()

    first = iso.spawn_relay("first", batch_size=500)
    try:
        wait_for(lambda: iso.position()[0] >= 2_500, 60, "the first relay to publish 2,500 events")
        first.kill()
    finally:
        if first.proc.poll() is None:
            first.kill()
    killed_at = iso.position()[0]
    assert killed_at < total, "the relay was killed before it finished"

    second = iso.spawn_relay("second", batch_size=500)
    try:
        wait_for(caught_up(iso), 90, "the restarted relay to catch up")
        assert second.terminate() == 0, second.output()
    finally:
        if second.proc.poll() is None:
            second.kill()
    assert "relay.lock.released" in second.events()

    records = read_topic(iso.settings, iso.wallet_topic)
    delivery = consume_in_version_order(records)
    assert delivery.ahead == 0
    assert_complete(delivery, iso)
    assert len(records) == 10_000 + delivery.duplicates
    assert delivery.duplicates <= 2 * 500  # at most the two batches in flight (pipeline_depth 2)
    assert all(count <= 1 for count in rewinds_per_partition(records).values())
    assert iso.position() == (total, 10_000)
    assert_heads_match_store(iso, stored_heads(iso))
    print(f"killed at notification {killed_at} of {total}; {delivery.duplicates} re-published")


def test_broker_restart_during_a_run_loses_nothing(iso: Isolated) -> None:
    iso.open_wallets(300, deposits=19)  # 6,000 events
    kafka = KafkaService(iso.settings)
    relay = iso.relay(batch_size=200)
    try:
        with running(relay):
            wait_for(lambda: iso.position()[0] >= 1_000, 60, "the relay to publish 1,000 events")
            kafka.stop()
            outage_started = time.monotonic()
            iso.deposit_everywhere(5)  # 1,500 more while the broker is down
            kafka.start()
            outage = time.monotonic() - outage_started
            wait_for(caught_up(iso), 180, "the relay to catch up after the broker came back")
    finally:
        if kafka.state().state != "up":
            kafka.start()

    records = read_topic(iso.settings, iso.wallet_topic)
    delivery = consume_in_version_order(records)
    assert_complete(delivery, iso)
    assert delivery.ahead == 0
    assert iso.position()[1] == 7_500
    print(f"broker outage {outage:.1f} s; {delivery.duplicates} duplicates on the wire")


def test_two_relays_never_interleave_and_the_other_takes_over(iso: Isolated) -> None:
    iso.open_wallets(400, deposits=19)  # 8,000 events
    relays = [iso.spawn_relay("a", batch_size=250), iso.spawn_relay("b", batch_size=250)]
    try:
        wait_for(lambda: any(r.acquired() for r in relays), 60, "one relay to take the lock")
        wait_for(lambda: iso.position()[0] >= 2_000, 60, "2,000 events published")
        active = [r for r in relays if r.acquired()]
        waiting = [r for r in relays if not r.acquired()]
        assert len(active) == 1 and len(waiting) == 1, "exactly one relay holds the lock"
        (standby,) = waiting
        assert standby.proc.poll() is None, standby.output()
        wait_for(lambda: "relay.lock.waiting" in standby.events(), 30, "the other relay to wait")

        active[0].kill()
        killed_at = iso.position()[0]
        wait_for(standby.acquired, 30, "the standby relay to take over")
        iso.deposit_everywhere(5)  # 2,000 more after the takeover
        wait_for(caught_up(iso), 90, "the standby relay to catch up")
        assert standby.terminate() == 0, standby.output()
    finally:
        for relay in relays:
            if relay.proc.poll() is None:
                relay.kill()

    records = read_topic(iso.settings, iso.wallet_topic)
    delivery = consume_in_version_order(records)
    assert delivery.ahead == 0
    assert_complete(delivery, iso)
    assert all(count <= 1 for count in rewinds_per_partition(records).values())
    assert delivery.duplicates <= 2 * 250  # at most the killed relay's two batches in flight
    assert iso.position()[1] == 10_000
    print(f"active relay killed at notification {killed_at}; {delivery.duplicates} re-published")


def test_signed_tree_heads_are_stored_published_and_match_the_store(iso: Isolated) -> None:
    iso.open_wallets(100, deposits=19)  # 2,000 events: heads every 500
    with running(iso.relay(batch_size=250, checkpoint_every=500, checkpoint_interval_s=0.5)):
        wait_for(caught_up(iso), 60, "the relay to publish 2,000 events")
        iso.deposit_everywhere(3)  # 300 more: fewer than 500, so the timer signs them
        wait_for(lambda: any(h.size == 2_300 for h, _ in stored_heads(iso)), 30, "a timed head at 2,300")

    # A restarted relay rebuilds the same tree from the store and goes on extending it.
    iso.deposit_everywhere(2)
    with running(iso.relay(checkpoint_every=500, checkpoint_interval_s=60)):
        wait_for(caught_up(iso), 60, "the restarted relay to catch up")
    heads = stored_heads(iso)
    sizes = [signed.size for signed, _ in heads]
    assert {500, 1_000, 1_500, 2_000, 2_300, 2_500} <= set(sizes)
    assert sizes[-1] == 2_500  # the graceful stop signed the rest
    assert_heads_match_store(iso, heads)
    assert_stored_tree_is_the_store_s(iso, 2_500)

    published = [json.loads(record.value) for record in read_topic(iso.settings, iso.checkpoints_topic)]
    stored_docs = [{**signed.to_dict(), "last_notification_id": nid} for signed, nid in heads]
    assert published == stored_docs, "each head is published once, in order, exactly as stored"

    with pytest.raises(SignatureError):
        verify_tree_head(generate_private_key().public_key(), heads[-1][0])


def test_relay_refuses_a_rewritten_log(iso: Isolated) -> None:
    iso.open_wallets(10, deposits=4)
    relay = iso.relay()
    with running(relay):
        wait_for(caught_up(iso), 30, "the relay to publish 50 events")

    with psycopg.connect(iso.settings.pg_conninfo, autocommit=True) as conn:
        # As a superuser that bypasses the append-only trigger.
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            f"DELETE FROM {iso.app_name}_events WHERE notification_id = "
            f"(SELECT min(notification_id) + 7 FROM {iso.app_name}_events)"
        )
    restarted = iso.relay()
    try:
        with pytest.raises(IntegrityError, match="rewritten"):
            restarted.acquire()
    finally:
        restarted.close()


def test_a_relay_stores_the_tree_nodes_a_log_relayed_before_lacked(iso: Isolated) -> None:
    iso.open_wallets(30, deposits=4)
    with running(iso.relay(checkpoint_interval_s=0.2)):
        wait_for(caught_up(iso), 30, "the relay to publish 150 events")
    with iso.connect() as conn:  # only the nodes of its first 37 leaves kept (a superuser bypasses the trigger)
        conn.execute("SET session_replication_role = replica")
        conn.execute(f"DELETE FROM {TREE_TABLE} WHERE (position + 1) * (1::bigint << level) > 37")
    iso.open_wallets(10, deposits=1)
    with running(iso.relay(checkpoint_interval_s=0.2)):
        wait_for(caught_up(iso), 30, "the restarted relay to catch up")
    assert_stored_tree_is_the_store_s(iso, 170)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), iso.connect() as conn:
        conn.execute(f"UPDATE {TREE_TABLE} SET hash = hash")


def test_a_head_published_but_not_stored_before_a_crash_is_stored_on_restart(iso: Isolated) -> None:
    iso.open_wallets(20, deposits=4)
    with running(iso.relay(checkpoint_interval_s=0.2)):
        wait_for(caught_up(iso), 30, "the relay to publish 100 events")
    last, _ = stored_heads(iso)[-1]
    with iso.connect() as conn:  # the crash window: published, never stored
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM bazaar_audit_heads WHERE tree_size = %s", (last.size,))
    assert last.size not in {signed.size for signed, _ in stored_heads(iso)}
    restarted = iso.relay()
    try:
        assert restarted.acquire()
    finally:
        restarted.close()
    assert stored_heads(iso)[-1][0] == last


def test_a_relay_that_lost_its_lock_cannot_move_the_position(iso: Isolated) -> None:
    iso.open_wallets(20, deposits=4)  # 100 events
    stale = iso.relay(batch_size=40)
    successor = iso.relay(batch_size=40)
    try:
        assert stale.acquire()
        stale.publish_available()
        assert iso.position() == (iso.last_notification_id(), 100)
        # The lock goes while the stale relay's session lives on and it still believes it holds it.
        assert stale._conn is not None
        stale._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (LOCK_KEY_PREFIX + "test",))
        iso.open_wallets(10, deposits=4)  # 50 more, published by the successor
        assert successor.acquire()
        successor.publish_available()
        taken_over = iso.position()
        assert taken_over == (iso.last_notification_id(), 150)
        iso.open_wallets(10, deposits=4)  # 50 more, which the stale relay tries to publish first

        with pytest.raises(LockLostError, match="moved by another relay"):
            stale.publish_available()
        assert iso.position() == taken_over  # neither position nor tree size moved
        assert_stored_tree_is_the_store_s(iso, 150)  # nor did its tree nodes land

        successor.publish_available()
    finally:
        stale.close()
        successor.close()
    assert iso.position() == (iso.last_notification_id(), 200)
    assert_stored_tree_is_the_store_s(iso, 200)
    delivery = consume_in_version_order(read_topic(iso.settings, iso.wallet_topic))
    assert_complete(delivery, iso)  # the stale relay's sends are repeats the consumer drops


def test_a_crashed_relay_s_successor_re_publishes_at_most_its_two_batches_in_flight(iso: Isolated) -> None:
    batch = 500
    iso.open_wallets(300, deposits=19)  # 6,000 events
    first = iso.spawn_relay("first", batch_size=batch)
    try:
        wait_for(lambda: iso.position()[0] >= 2_000, 60, "the first relay to publish 2,000 events")
        first.proc.send_signal(signal.SIGSTOP)  # frozen mid-run: what it sent stays sent, nothing more goes
        time.sleep(1.0)  # the broker appends what was already on the wire
        positioned = iso.position()[0]
        on_topic = read_topic(iso.settings, iso.wallet_topic)
        ahead = [nid for nid in (int(header_value(r.headers, "notification_id") or 0) for r in on_topic)
                 if nid > positioned]
        first.kill()
    finally:
        if first.proc.poll() is None:
            first.kill()
    assert len(ahead) <= 2 * batch, f"{len(ahead)} events published past the stored position"

    second = iso.spawn_relay("second", batch_size=batch)
    try:
        wait_for(caught_up(iso), 90, "the restarted relay to catch up")
        assert second.terminate() == 0, second.output()
    finally:
        if second.proc.poll() is None:
            second.kill()
    records = read_topic(iso.settings, iso.wallet_topic)
    delivery = consume_in_version_order(records)
    assert_complete(delivery, iso)
    repeated = [nid for nid, n in Counter(int(header_value(r.headers, "notification_id") or 0)
                                          for r in records).items() if n > 1]
    assert sorted(repeated) == sorted(ahead)  # exactly what was published past the position, once more
    assert delivery.duplicates == len(ahead) <= 2 * batch
    print(f"frozen at position {positioned}; {len(ahead)} events ahead of it, re-published once each")
