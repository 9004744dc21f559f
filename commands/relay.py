"""The relay: publishes the event store's notification log to Kafka, in order, with signed Merkle checkpoints.
(Over 400 lines: delivery, the single-active lock and the transparency log share one connection and loop.)

Delivery. Each batch of notifications is mapped to messages (`commands.messages.to_message`) and sent;
the position advances only once the broker acknowledged every message of the batch. The next batch is
read, mapped and sent while the previous one is being acknowledged (`pipeline_depth`, default 2), so a
crash re-publishes at most the last two batches; consumers drop repeats by (aggregate id, version).
Per-aggregate order holds because one idempotent producer (acks=all, at most 5 requests in flight) sends
in notification order: with idempotence on, kafka-python mutes a partition while a batch to it is in
flight (its `guarantee_message_order`), so a retried batch can never overtake a later one. After a failed
send the relay lets every outstanding send finish, then re-sends from its position: a consumer that
applies a version only when it is the aggregate's next one, and skips any other, sees each event once
and in order.
Notification ids may have gaps (sequences are not transactional), but eventsourcing serialises inserts
with a table lock, so no lower id can commit after a higher one has been read.

Single active relay. A relay holds `pg_try_advisory_lock(hashtext('bazaar.relay.' || name))` on a
dedicated connection; the others retry every second and take over when that connection closes. The
position is written on the same connection with a compare-and-set, so a relay that lost its lock cannot
move the position.

Transparency log. Leaf i of an RFC 6962 Merkle tree is the i-th event in notification order
(`commands.audit.heads.leaf_data`). The tree size is stored with the position in one statement, and on
start the tree is rebuilt from the store up to that size (and checked against the latest signed head).
Every `checkpoint_every` events or `checkpoint_interval_s` seconds (5 s: also when idle, on the poll
timer) the relay signs the tree head (Ed25519), publishes it to `<prefix>audit.checkpoints` and stores it
in `bazaar_audit_heads`. The tree's nodes are stored with each position (`commands.audit.tree`), so
proofs read O(log n) of them; on start the relay backfills nodes the table lacks and stores the topic's
last head if a crash came between publishing and storing it. It reads the log with `LogReader`: the
store's recorder and a fast mapper, not the command side's application.
"""

from __future__ import annotations

import gc
import json
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import FrameType
from typing import Any

import psycopg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.application import Application
from eventsourcing.persistence import Mapper, Notification, StoredEvent
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from kafka.producer.future import FutureRecordMetadata
from psycopg import sql
from tenacity import Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from commands.audit.codec import FastMapper, fast_event_and_hash
from commands.audit.heads import SIGNING_INTERVAL_S, HeadStore, leaf_of
from commands.audit.keys import signing_key
from commands.audit.merkle import AuditError, MerkleLog
from commands.audit.signing import (
    SignatureError,
    SignedTreeHead,
    key_id,
    make_tree_head,
    sign_tree_head,
    verify_tree_head,
)
from commands.audit.tree import append_nodes, backfill, create_tree_table
from commands.messages import to_message
from commands.store import eventsourcing_env
from infra.adapters.kafka import ensure_topics, make_consumer, make_producer
from infra.settings import Settings, get_settings
from schemas import names
from schemas.messages import TOPIC_PREFIX, EventMessage

log = structlog.get_logger(__name__)

POSITIONS_TABLE = names.RELAY_POSITIONS_TABLE
LOCK_KEY_PREFIX = "bazaar.relay."
POSITIONS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} ("
    " name text PRIMARY KEY,"
    " notification_id bigint NOT NULL DEFAULT 0,"
    " tree_size bigint NOT NULL DEFAULT 0,"
    " updated_at timestamptz NOT NULL DEFAULT now())"
)
# The producer gives up on a record only after this long; a broker outage shorter than it costs no resend.
RELAY_DELIVERY_TIMEOUT_MS = 300_000
# After a stop is requested, how long an undelivered batch may still wait for the broker.
STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 10.0
RECOVERY_BATCH = 2_000
# Consecutive failed sends after which the (drained) producer is swapped for a new one.
REPLACE_PRODUCER_AFTER = 5


class RelayError(Exception):
    """Base of the relay's own failures."""


class DeliveryError(RelayError):
    """The broker did not acknowledge every message of a batch; the batch is sent again."""


class LockLostError(RelayError):
    """Another relay moved the position: this one no longer holds the lock."""


class IntegrityError(RelayError):
    """The store no longer matches what the relay published or signed: it refuses to go on."""


@dataclass(frozen=True)
class Batch:
    """Notifications mapped to messages, with the Merkle leaf hash of each event."""

    messages: list[EventMessage]
    leaves: list[bytes]
    notification_ids: list[int]

    @property
    def size(self) -> int:
        """How many events the batch holds."""
        return len(self.messages)

    @property
    def last_id(self) -> int:
        """The notification id of the batch's last event."""
        return self.notification_ids[-1]


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head and the notification id of its last leaf."""

    signed: SignedTreeHead
    last_notification_id: int

    def to_message_value(self) -> bytes:
        """The JSON published to the checkpoints topic."""
        return json.dumps({**self.signed.to_dict(), "last_notification_id": self.last_notification_id}).encode()


def map_notifications(mapper: Mapper[Any], notifications: Sequence[Notification], topic_prefix: str) -> Batch:
    """Decode stored events and map each to its Kafka message and Merkle leaf hash."""
    messages: list[EventMessage] = []
    leaves: list[bytes] = []
    for notification in notifications:
        # One parse gives both the event and its hash (the auditor's fast path, identical to event_hash).
        event, hash_hex = fast_event_and_hash(_stored(notification), mapper)
        message = to_message(event, notification.id, topic_prefix, digest=hash_hex, validate=False)
        messages.append(message)
        leaves.append(leaf_of(notification.id, event.originator_id, event.originator_version, hash_hex))
    return Batch(messages, leaves, [n.id for n in notifications])


def _stored(notification: Notification) -> StoredEvent:
    return StoredEvent(notification.originator_id, notification.originator_version, notification.topic,
                       notification.state)


class KeyPartitions:
    """The partition Kafka's default partitioner gives a key (murmur2, as the Java client), kept per key.

    Events of one aggregate share its key, and kafka-python's partitioner is pure Python: remembering the
    answer saves a hash and a metadata scan per message. Keys map to the same partitions as before.
    """

    def __init__(self, producer: KafkaProducer, max_keys: int = 100_000) -> None:
        self._producer = producer
        self._max_keys = max_keys
        self._topics: dict[str, tuple[list[int], dict[bytes, int]]] = {}

    def refresh(self) -> None:
        """Forget a topic's keys when its partitions changed (the default partitioner would remap them)."""
        for topic, (partitions, _) in list(self._topics.items()):
            if sorted(self._producer.partitions_for(topic)) != partitions:
                del self._topics[topic]

    def __call__(self, topic: str, key: bytes) -> int:
        """The key's partition in the topic."""
        entry = self._topics.get(topic)
        if entry is None:
            entry = self._topics[topic] = (sorted(self._producer.partitions_for(topic)), {})
        partitions, keys = entry
        partition = keys.get(key)
        if partition is None:
            if len(keys) >= self._max_keys:
                keys.clear()
            partition = keys[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        return partition


class LogReader(Application[Any]):
    """What the relay reads the log with: the store's recorder and a fast mapper, nothing of the command side."""

    name = "Bazaar"  # the command side's application name, so the same events table

    def construct_mapper(self) -> Mapper[Any]:
        return FastMapper(transcoder=self.construct_transcoder())


def log_reader(settings: Settings) -> LogReader:
    """A reader of the platform's log; it reads with one connection at a time, so a small pool."""
    env = eventsourcing_env(settings.model_copy(update={"pg_pool_size": 2}))
    env["AGGREGATE_CACHE_MAXSIZE"] = ""  # the relay never loads an aggregate
    return LogReader(env=env)


def relay_producer(settings: Settings, name: str = "main") -> KafkaProducer:
    """The relay's producer: the platform's idempotent acks=all producer, patient through outages."""
    return make_producer(
        settings, client_id=f"bazaar-relay-{name}", delivery_timeout_ms=RELAY_DELIVERY_TIMEOUT_MS
    )


@contextmanager
def _borrowed(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """Lend an open connection to code that closes what it gets from `with`."""
    yield conn


class Relay:
    """Follows the notification log from its tracked position and publishes every event to Kafka."""

    def __init__(
        self,
        app: Application[Any],
        settings: Settings,
        producer: KafkaProducer | None = None,
        *,
        name: str = "main",
        topic_prefix: str = TOPIC_PREFIX,
        batch_size: int = 1_000,
        checkpoint_every: int = 1_000,
        checkpoint_interval_s: float = SIGNING_INTERVAL_S,
        poll_interval_s: float = 0.5,
        lock_retry_s: float = 1.0,
        progress_interval_s: float = 10.0,
        pipeline_depth: int = 2,
        conninfo: str | None = None,
        private_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.recorder: Any = app.recorder
        self.mapper = app.mapper
        self.settings = settings
        self.name = name
        self.topic_prefix = topic_prefix
        self.checkpoints_topic = names.topic(names.CHECKPOINTS_TOPIC, topic_prefix)
        self.batch_size = batch_size
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.poll_interval_s = poll_interval_s
        self.lock_retry_s = lock_retry_s
        self.progress_interval_s = progress_interval_s
        # Batches sent before the oldest must be acknowledged: the broker works while the next is mapped.
        self.pipeline_depth = max(1, pipeline_depth)
        # The relay's own tables (position, heads) live where this connection points (search_path).
        self.conninfo = conninfo or settings.pg_conninfo
        self.private_key = private_key or signing_key(settings)
        self._producer = producer or relay_producer(settings, name)
        self._partitions = KeyPartitions(self._producer)
        self._conn: psycopg.Connection[Any] | None = None
        self._locked = False
        self._heads: HeadStore | None = None
        self.position = 0
        self.tree = MerkleLog()
        self._last_head_size = 0
        self._last_head_at = time.monotonic()
        self._progress_count = 0
        self._progress_at = time.monotonic()
        self._log = log.bind(relay=name)

    # --- lock and recovery ----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether this relay holds its lock (as far as it knows)."""
        return self._locked

    @property
    def tree_size(self) -> int:
        """How many events the transparency log holds (all published, in notification order)."""
        return self.tree.size

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait until this relay holds its name's lock, then recover; False when stop is set first."""
        stop = stop or threading.Event()
        waiting_logged = False
        while not stop.is_set():
            if self._try_lock():
                self._log.info("relay.lock.acquired")
                self._after_acquire()
                self._progress_count, self._progress_at = 0, time.monotonic()
                return True
            if not waiting_logged:
                self._log.info("relay.lock.waiting", retry_s=self.lock_retry_s)
                waiting_logged = True
            stop.wait(self.lock_retry_s)
        return False

    def _try_lock(self) -> bool:
        """One attempt at the advisory lock on a fresh or kept connection."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK_KEY_PREFIX + self.name,)
            ).fetchone()
        except psycopg.OperationalError as exc:
            self._log.warning("relay.db.unavailable", error=str(exc))
            self._close_connection()
            return False
        # The connection stays open between tries; only a granted lock makes this relay active.
        self._locked = bool(row is not None and row[0])
        return self._locked

    def _after_acquire(self) -> None:
        """Create the relay's tables, rebuild the tree from the store, listen for new events."""
        conn = self._require_conn()
        conn.execute(POSITIONS_DDL)
        self._heads = HeadStore(lambda: _borrowed(conn))
        create_tree_table(conn)
        self._recover()
        channel = getattr(self.recorder, "channel_name", None)
        if channel:
            # eventsourcing NOTIFYs this channel on every insert: new events wake the relay at once.
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def _recover(self) -> None:
        """Load the position and tree size, and rebuild the Merkle tree from the store up to it."""
        conn = self._require_conn()
        conn.execute(
            f"INSERT INTO {POSITIONS_TABLE} (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (self.name,)
        )
        row = conn.execute(
            f"SELECT notification_id, tree_size FROM {POSITIONS_TABLE} WHERE name = %s", (self.name,)
        ).fetchone()
        assert row is not None
        position, size = int(row[0]), int(row[1])
        started = time.monotonic()
        self.tree, nids = self._rebuild_tree(position)
        if self.tree.size != size:
            raise IntegrityError(
                f"the store holds {self.tree.size} events up to notification {position}, "
                f"but the relay recorded {size}: the log was rewritten"
            )
        self.position = position
        self._check_latest_head()
        self._store_last_published_head()
        # A log relayed before tree nodes were stored gets them once, from the tree just checked.
        backfilled = backfill(conn, self.tree, nids)
        self._log.info(
            "relay.recovered",
            position=position,
            tree_size=size,
            nodes_backfilled_for=backfilled,
            seconds=round(time.monotonic() - started, 3),
        )

    def _rebuild_tree(self, position: int) -> tuple[MerkleLog, list[int]]:
        """The Merkle tree of every stored event up to notification `position`, and each leaf's id."""
        tree, nids = MerkleLog(), []
        after = 0
        while after < position:
            notifications = self.recorder.select_notifications(
                after, RECOVERY_BATCH, stop=position, inclusive_of_start=False
            )
            if not notifications:
                break
            for notification in notifications:
                tree.append(self._leaf(notification))
                nids.append(notification.id)
            after = notifications[-1].id
        return tree, nids

    def _leaf(self, notification: Notification) -> bytes:
        """The Merkle leaf hash of one stored event."""
        event, digest = fast_event_and_hash(_stored(notification), self.mapper)
        return leaf_of(notification.id, event.originator_id, event.originator_version, digest)

    def _check_latest_head(self) -> None:
        """Refuse to go on when the rebuilt tree disagrees with the last head signed over it."""
        latest = self._require_heads().latest()
        self._last_head_size = 0
        self._last_head_at = time.monotonic()
        if latest is None:
            return
        signed, _ = latest
        if signed.size > self.tree.size:
            # A head beyond our position: another relay name or an older position; nothing to compare yet.
            self._log.warning("relay.head.ahead", head_size=signed.size, tree_size=self.tree.size)
            return
        if self.tree.root(signed.size) != signed.root_hash:
            raise IntegrityError(f"the store's Merkle root at size {signed.size} differs from its signed head")
        self._last_head_size = signed.size

    def _store_last_published_head(self) -> None:
        """Store the checkpoints topic's last head if a crash came between publishing and storing it.

        A head is published before it is stored; without this, one on the topic and never in the table
        would fail `audit verify`'s comparison of the two copies for good. Stored only when our key signed
        it and our tree, just checked against the store, gives its root.
        """
        last = self._last_published()
        if last is None or last.signed.size > self.tree.size:
            return
        signed = last.signed
        if signed.head.key_id != key_id(self.private_key.public_key()):
            return
        try:
            verify_tree_head(self.private_key.public_key(), signed)
        except SignatureError:
            return
        if self.tree.root(signed.size) != signed.root_hash:
            raise IntegrityError(f"the store's Merkle root at size {signed.size} differs from the head last published")
        stored = self._require_heads().latest()
        if stored is None or stored[0].size < signed.size:
            self._require_heads().add(signed, last.last_notification_id)
            self._last_head_size = max(self._last_head_size, signed.size)
            self._log.warning("relay.head.restored", tree_size=signed.size)

    def _last_published(self) -> Checkpoint | None:
        """The last message of the checkpoints topic, or None (no topic, empty, unreadable, broker down)."""
        from kafka import TopicPartition

        try:
            consumer = make_consumer(self.settings, group_id=None, client_id=f"bazaar-relay-{self.name}-heads")
        except KafkaError:
            return None
        try:
            partitions = [TopicPartition(self.checkpoints_topic, p)
                          for p in sorted(consumer.partitions_for_topic(self.checkpoints_topic) or ())]
            if not partitions:
                return None
            consumer.assign(partitions)
            ends = consumer.end_offsets(partitions)
            if not any(ends.values()):
                return None
            for tp in partitions:
                consumer.seek(tp, max(0, ends[tp] - 1))
            records = [r for batch in consumer.poll(timeout_ms=2_000).values() for r in batch]
            if not records:
                return None
            doc = json.loads(max(records, key=lambda r: r.timestamp).value)
            return Checkpoint(SignedTreeHead.from_dict(doc), int(doc["last_notification_id"]))
        except (KafkaError, AuditError, KeyError, TypeError, ValueError) as exc:
            self._log.warning("relay.head.unreadable", error=repr(exc))
            return None
        finally:
            consumer.close()

    def release(self) -> None:
        """Give up the lock (closing the connection does it too, so a dead relay frees it anyway)."""
        if self._conn is not None and self._locked and not self._conn.closed:
            # A failure means the connection is gone, and the lock with it.
            with suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (LOCK_KEY_PREFIX + self.name,))
            self._log.info("relay.lock.released", position=self.position, tree_size=self.tree.size)
        self._close_connection()

    def close(self) -> None:
        """Release the lock and close the producer (waiting briefly for anything still unsent)."""
        self.release()
        self._close_producer(timeout=5.0)

    def _close_connection(self) -> None:
        """Close the lock connection (which frees the lock) and forget the tables on it."""
        if self._conn is not None:
            with suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        self._locked = False
        self._heads = None

    def _close_producer(self, timeout: float) -> None:
        """Close the producer, waiting up to timeout for what it still holds."""
        try:
            self._producer.close(timeout=timeout)
        except KafkaError as exc:  # close flushes first, and that may time out during an outage
            self._log.warning("relay.producer.close_failed", error=repr(exc))

    def _require_conn(self) -> psycopg.Connection[Any]:
        """The lock connection; LockLostError when this relay does not hold the lock."""
        if self._conn is None or not self._locked:
            raise LockLostError("the relay does not hold its lock")
        return self._conn

    def _require_heads(self) -> HeadStore:
        """The head store on the lock connection."""
        if self._heads is None:
            raise LockLostError("the relay does not hold its lock")
        return self._heads

    # --- publishing -----------------------------------------------------------------------------------

    def read_batch(self, after: int) -> Batch | None:
        """The next batch of events after notification `after`, mapped to messages; None when none."""
        notifications = self.recorder.select_notifications(after, self.batch_size, inclusive_of_start=False)
        if not notifications:
            return None
        return map_notifications(self.mapper, notifications, self.topic_prefix)

    def publish_available(self, stop: threading.Event | None = None) -> int:
        """Publish every event after the position, batch by batch; returns how many were published.

        Up to `pipeline_depth` batches are in flight: the next one is read and mapped while the producer's
        I/O thread delivers the previous ones, and each batch's position is recorded once it is acknowledged.
        """
        self._require_conn()
        total = 0
        in_flight: deque[tuple[Batch, list[FutureRecordMetadata]]] = deque()
        after = self.position
        while True:
            batch = None if _is_set(stop) else self.read_batch(after)
            if batch is not None:
                in_flight.append((batch, self._send(batch)))
                after = batch.last_id
                if len(in_flight) < self.pipeline_depth:
                    continue
            if not in_flight:
                return total
            done, futures = in_flight.popleft()
            self._await_delivery(futures, stop)
            self._advance(done)
            total += done.size
            self._note_progress(done.size)
            self.checkpoint_if_due(stop)

    def _send(self, batch: Batch) -> list[FutureRecordMetadata]:
        """Hand every message of the batch to the producer, in notification order."""
        send, partition = self._producer.send, self._partitions
        partition.refresh()
        return [
            send(m.topic, key=m.key, value=m.value, headers=m.headers, partition=partition(m.topic, m.key))
            for m in batch.messages
        ]

    def _await_delivery(
        self, futures: Sequence[FutureRecordMetadata], stop: threading.Event | None
    ) -> None:
        """Wait until the broker answered for every message; raise DeliveryError unless all succeeded."""
        started = time.monotonic()
        warned = False
        for future in futures:
            while not future.is_done:
                try:
                    future.get(timeout=1.0)
                except KafkaError:
                    if future.is_done:
                        break  # failed: counted below
                    waited = time.monotonic() - started
                    if not warned and waited > 5.0:
                        self._log.warning("relay.kafka.waiting", pending=len(futures), position=self.position)
                        warned = True
                    if _is_set(stop) and waited > STOP_GRACE_S:
                        raise DeliveryError("stopping with messages the broker has not acknowledged") from None
        failed = [future for future in futures if not future.succeeded()]
        if failed:
            raise DeliveryError(f"{len(failed)} of {len(futures)} messages failed: {failed[0].exception!r}")

    def _advance(self, batch: Batch) -> None:
        """Record the new position, tree size and tree nodes in one transaction; grow the tree to match."""
        conn, old_size = self._require_conn(), self.tree.size
        self.tree.extend(batch.leaves)
        try:
            with conn.transaction():
                cursor = conn.execute(
                    f"UPDATE {POSITIONS_TABLE} SET notification_id = %s, tree_size = %s, updated_at = now()"
                    " WHERE name = %s AND notification_id = %s AND tree_size = %s",
                    (batch.last_id, self.tree.size, self.name, self.position, old_size),
                )
                if cursor.rowcount != 1:
                    raise LockLostError(f"the position of relay {self.name!r} was moved by another relay")
                append_nodes(conn, self.tree, old_size, batch.notification_ids)
        except BaseException:
            self.tree.truncate(old_size)
            raise
        self.position = batch.last_id

    def _note_progress(self, count: int) -> None:
        """Log the publishing rate every `progress_interval_s` seconds."""
        self._progress_count += count
        elapsed = time.monotonic() - self._progress_at
        if elapsed >= self.progress_interval_s:
            self._log.info(
                "relay.progress",
                events=self._progress_count,
                rate=round(self._progress_count / elapsed, 1),
                position=self.position,
                tree_size=self.tree.size,
            )
            self._progress_count, self._progress_at = 0, time.monotonic()

    # --- checkpoints ----------------------------------------------------------------------------------

    def checkpoint_due(self) -> bool:
        """Whether enough events or time have passed since the last signed head."""
        grown = self.tree.size - self._last_head_size
        if grown <= 0:
            return False
        overdue = time.monotonic() - self._last_head_at >= self.checkpoint_interval_s
        return grown >= self.checkpoint_every or overdue

    def checkpoint_if_due(self, stop: threading.Event | None = None) -> Checkpoint | None:
        """Sign, publish and store a tree head when one is due."""
        return self.checkpoint(stop) if self.checkpoint_due() else None

    def checkpoint(self, stop: threading.Event | None = None) -> Checkpoint | None:
        """Sign the current tree head, publish it, then store it; None when the tree is empty."""
        if self.tree.size == 0:
            return None
        public = self.private_key.public_key()
        head = make_tree_head(public, self.tree.size, self.tree.root(), time.time_ns() // 1_000_000)
        checkpoint = Checkpoint(sign_tree_head(self.private_key, head), self.position)
        # Kafka first: a head stored but never published would be missing from the topic for good,
        # while one published twice (after a crash) carries the same root.
        future = self._producer.send(self.checkpoints_topic, value=checkpoint.to_message_value())
        self._await_delivery([future], stop)
        self._require_heads().add(checkpoint.signed, checkpoint.last_notification_id)
        self._last_head_size, self._last_head_at = head.size, time.monotonic()
        self._log.info(
            "relay.checkpoint",
            tree_size=head.size,
            root=head.root_hash_b64,
            last_notification_id=checkpoint.last_notification_id,
        )
        return checkpoint

    # --- the loop -------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Follow the log until stop is set: wait for the lock, publish, checkpoint; retry what fails."""
        failures = 0
        while not stop.is_set():
            try:
                if not self.acquire(stop):
                    break
                self._follow(stop)
                failures = 0
            except (psycopg.OperationalError, psycopg.InterfaceError, LockLostError) as exc:
                # The lock connection (or the store) went away: start over from the stored position.
                failures += 1
                self._log.warning("relay.lock.lost", error=str(exc), attempt=failures)
                stop.wait(_backoff(failures))
            finally:
                self.release()

    def _follow(self, stop: threading.Event) -> None:
        """Publish while holding the lock; a failed send is retried from the position, with backoff."""
        failures = 0
        while not stop.is_set():
            try:
                published = self.publish_available(stop)
                self.checkpoint_if_due(stop)
                failures = 0
            except (KafkaError, DeliveryError) as exc:
                failures += 1
                self._log.warning("relay.kafka.retry", error=repr(exc), attempt=failures, position=self.position)
                self._settle_producer(stop, failures)
                stop.wait(_backoff(failures))
                continue
            if not published:
                self._wait_for_events()
        self._final_checkpoint(stop)

    def _final_checkpoint(self, stop: threading.Event) -> None:
        """On a graceful stop, sign what was published since the last head (best effort)."""
        if self.tree.size <= self._last_head_size:
            return
        try:
            self.checkpoint(stop)
        except (KafkaError, DeliveryError) as exc:
            self._log.warning("relay.checkpoint.skipped", error=repr(exc))

    def _settle_producer(self, stop: threading.Event, failures: int) -> None:
        """After a failed send, let every outstanding send finish before the batch goes again.

        Resending while older sends are still retrying could put a message behind its own successor;
        once nothing is outstanding the same producer keeps per-partition order. A producer that keeps
        failing is replaced, but only when drained: its sender thread could still deliver otherwise.
        """
        if not self._drain(stop) or failures < REPLACE_PRODUCER_AFTER:
            return
        self._log.warning("relay.producer.replaced", attempt=failures)
        self._close_producer(timeout=5.0)
        self._producer = relay_producer(self.settings, self.name)
        self._partitions = KeyPartitions(self._producer)

    def _drain(self, stop: threading.Event) -> bool:
        """Wait until the producer has nothing outstanding; False when stopping first."""
        while True:
            try:
                self._producer.flush(timeout=1.0)
                return True
            except KafkaError:
                if stop.is_set():
                    return False

    def _wait_for_events(self) -> None:
        """Sleep until the store announces new events, or until the poll interval passes."""
        conn = self._require_conn()
        for _ in conn.notifies(timeout=self.poll_interval_s, stop_after=1):
            break


def _is_set(stop: threading.Event | None) -> bool:
    """Whether a stop was asked for."""
    return stop is not None and stop.is_set()


def _backoff(attempt: int) -> float:
    """Exponential backoff from half a second, capped."""
    return float(min(MAX_BACKOFF_S, 0.5 * 2 ** (attempt - 1)))


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to finish its batch and stop."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        # Only set the flag: logging here could deadlock on a lock the interrupted code holds.
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _ensure_catalogue(settings: Settings, stop: threading.Event) -> None:
    """Create the catalogue's topics, waiting for the broker if it is not up yet."""
    retrying = Retrying(
        retry=retry_if_exception_type(KafkaError),
        wait=wait_exponential(multiplier=0.5, max=MAX_BACKOFF_S),
        stop=stop_when_event_set(stop),
        before_sleep=lambda state: log.warning("relay.kafka.unavailable", attempt=state.attempt_number),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            ensure_topics(settings)


def run_relay(
    settings: Settings | None = None,
    *,
    app: Application[Any] | None = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> None:
    """Run the relay until SIGTERM/SIGINT (or `stop`): finish the batch, flush, release the lock.

    `options` go to `Relay` (name, topic_prefix, batch_size, checkpoint_every, ...).
    """
    settings = settings or get_settings()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _stop_on_signals(stop)
    if options.get("topic_prefix", TOPIC_PREFIX) == TOPIC_PREFIX:
        try:
            _ensure_catalogue(settings, stop)
        except KafkaError:
            if stop.is_set():  # stopped while waiting for the broker
                return
            raise
    owned_app = app is None
    if app is None:
        app = log_reader(settings)
    relay = Relay(app, settings, **options)
    # Start-up objects (modules, schemas, the app) live as long as the process: keep them out of the
    # collector's full scans, which otherwise cost about a tenth of the relay's time.
    gc.collect()
    gc.freeze()
    started = time.monotonic()
    try:
        relay.run(stop)
    finally:
        relay.close()
        if owned_app:
            app.close()
        log.info("relay.stopped", position=relay.position, seconds=round(time.monotonic() - started, 1))


if __name__ == "__main__":
    from infra.logging import configure_logging

    configure_logging()
    run_relay()
