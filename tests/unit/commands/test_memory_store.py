"""The in-memory event store behaves like the PostgreSQL one where the Marketplace relies on it."""

from __future__ import annotations

import threading
from uuid import UUID, uuid4

import pytest
from cryptography.exceptions import InvalidTag
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from commands.application import Marketplace
from commands.auth import Principal
from commands.handlers import wallets
from commands.personal_data import KeyShredded
from commands.store import BazaarRecorder, IdempotencyRecord, InMemoryRecorder, InMemoryVault, eventsourcing_env
from domain.wallet import Wallet, wallet_id_for
from infra.settings import Settings
from schemas.wallet import Deposit
from tests.unit.commands.support import World, eur


def stored(originator: UUID, version: int = 1) -> StoredEvent:
    return StoredEvent(originator_id=originator, originator_version=version, topic="test:Event", state=b"{}")


def record(key: str, events: int, request_hash: str = "h") -> IdempotencyRecord:
    return IdempotencyRecord(key, "client-1", request_hash, events, {"aggregate_id": "a", "version": 1})


def test_postgres_stays_the_default_store(settings: Settings) -> None:
    env = eventsourcing_env(settings.model_copy(update={"event_store": "postgres"}))
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert env["APPLICATION_RECORDER_TOPIC"] == f"{BazaarRecorder.__module__}:BazaarRecorder"
    assert env["POSTGRES_PORT"] == str(settings.pg_port)
    assert Settings.model_fields["event_store"].default == "postgres"


def test_memory_selects_eventsourcings_popo_recorder(memory_settings: Settings, app: Marketplace) -> None:
    env = eventsourcing_env(memory_settings)
    assert env["PERSISTENCE_MODULE"] == "commands.store:InMemoryFactory"
    assert not any(name.startswith("POSTGRES_") for name in env)
    assert isinstance(app.recorder, InMemoryRecorder) and isinstance(app.recorder, POPOApplicationRecorder)


def test_each_command_of_a_batch_stores_its_own_positions() -> None:
    recorder = InMemoryRecorder()
    first, second, third = uuid4(), uuid4(), uuid4()
    ids = recorder.insert_events([stored(first), stored(first, 2), stored(second), stored(third)],
                                 idempotency=[record("k1", 2), record("", 1), record("k2", 1)])
    assert ids == [1, 2, 3, 4]
    assert recorder.find_idempotent_response("client-1", "k1") == ("h", {"aggregate_id": "a", "version": 1,
                                                                         "positions": [1, 2]})
    found = recorder.find_idempotent_response("client-1", "k2")
    assert found is not None and found[1]["positions"] == [4]
    assert recorder.find_idempotent_response("client-2", "k1") is None  # keys are scoped to the caller


def test_a_key_recorded_already_refuses_the_whole_insert() -> None:
    recorder = InMemoryRecorder()
    recorder.insert_events([stored(uuid4())], idempotency=[record("k1", 1)])
    with pytest.raises(IntegrityError):
        recorder.insert_events([stored(uuid4())], idempotency=[record("k1", 1, request_hash="other")])
    assert recorder.max_notification_id() == 1
    assert recorder.find_idempotent_response("client-1", "k1") == ("h", {"aggregate_id": "a", "version": 1,
                                                                         "positions": [1]})


def test_one_key_twice_in_a_batch_is_refused() -> None:
    recorder = InMemoryRecorder()
    with pytest.raises(IntegrityError):
        recorder.insert_events([stored(uuid4()), stored(uuid4())], idempotency=[record("k1", 1), record("k1", 1)])
    assert recorder.max_notification_id() is None


def test_a_stale_event_refuses_the_idempotency_record_with_it() -> None:
    recorder = InMemoryRecorder()
    aggregate = uuid4()
    recorder.insert_events([stored(aggregate)])
    with pytest.raises(IntegrityError):
        recorder.insert_events([stored(aggregate)], idempotency=[record("k1", 1)])
    assert recorder.find_idempotent_response("client-1", "k1") is None


def test_a_replayed_response_is_a_copy() -> None:
    recorder = InMemoryRecorder()
    recorder.insert_events([stored(uuid4())], idempotency=[record("k1", 1)])
    found = recorder.find_idempotent_response("client-1", "k1")
    assert found is not None
    found[1]["positions"].append(99)
    assert recorder.find_idempotent_response("client-1", "k1") == ("h", {"aggregate_id": "a", "version": 1,
                                                                         "positions": [1]})


def test_the_vault_binds_ciphertext_to_its_user_and_shredding_is_for_good() -> None:
    vault, ada, bob = InMemoryVault(), uuid4(), uuid4()
    vault.create_key(ada)
    vault.create_key(bob)
    ciphertext = vault.encrypt(ada, {"email": "ada@example.org"})
    vault.create_key(ada)  # a second create keeps the first key
    assert vault.decrypt(ada, ciphertext) == {"email": "ada@example.org"}
    with pytest.raises(InvalidTag):
        vault.decrypt(bob, ciphertext)
    vault.shred(ada)
    with pytest.raises(KeyShredded):
        vault.decrypt(ada, ciphertext)


def test_concurrent_commands_all_commit_through_group_commit(world: World) -> None:
    payers = [uuid4() for _ in range(16)]
    errors: list[BaseException] = []

    def deposit(user_id: UUID) -> None:
        try:
            actor = Principal(user_id, "buyer")
            cmd = Deposit(amount=eur(100), reference="psp-1")
            world.run(lambda: wallets.deposit(world.app, actor, user_id, cmd))
            if user_id in payers[:4]:  # four also pay into one shared wallet: 5 writers race, within MAX_ATTEMPTS
                world.run(lambda: wallets.deposit(world.app, world.admin, payers[0], cmd))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=deposit, args=(payer,)) for payer in payers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert world.get(Wallet, wallet_id_for(payers[0], "EUR")).available.amount == 100 + 4 * 100
    notifications = world.app.recorder.select_notifications(1, 1_000)
    assert [n.id for n in notifications] == list(range(1, world.position() + 1))
