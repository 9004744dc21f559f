"""The write side: an eventsourcing Application on PostgreSQL whose saves go through group commit.

Each handler (commands/handlers/) loads aggregates, calls the domain once and returns a `Change`;
`Marketplace.run` commits it, answers stale writes with `VersionConflict`, retries races that the
caller did not pin with If-Match, and replays the first response for a repeated Idempotency-Key.
A handler's loads are not one snapshot: a refusal computed while another command moved one of the
aggregates it read is re-run on fresh state, so a race is never answered with a rule it did not break.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, TypeVar
from uuid import UUID

import structlog
from eventsourcing.application import AggregateNotFoundError, Application

from commands.group_commit import CommitUnit, ConcurrencyConflict, GroupCommitter
from commands.personal_data import KeyChange
from commands.store import CommandStore, IdempotencyRecord, eventsourcing_env
from domain.chain import ChainedAggregate
from domain.errors import DomainError, NotFoundError
from domain.wallet import Wallet, wallet_id_for
from infra.secrets import stored_secret
from infra.settings import Settings
from infra.tokens import Generations, InMemoryGenerations, TokenGenerations

log = structlog.get_logger(__name__)
A = TypeVar("A", bound=ChainedAggregate)
MAX_ATTEMPTS = 8
# The version of every aggregate the running handler read (None: it did not exist), per command attempt.
_READS: ContextVar[dict[UUID, int | None] | None] = ContextVar("bazaar_reads", default=None)


class VersionConflict(Exception):
    """The aggregate moved on: the caller's version is stale (HTTP 409 with the current version)."""

    def __init__(self, aggregate_id: UUID, current_version: int | None) -> None:
        super().__init__(f"aggregate {aggregate_id} is at version {current_version}")
        self.aggregate_id = aggregate_id
        self.current_version = current_version


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key was already used for a different request."""

    code = "idempotency.key_reused"


class ForbiddenError(DomainError):
    """The caller's role may not run this command."""

    code = "auth.forbidden"


@dataclass
class Change:
    """What one command did: the aggregate it is about, every aggregate to save, extra response fields.

    `key_changes` are the per-user keys it creates or shreds, committed in the transaction of its events.
    """

    target: ChainedAggregate
    aggregates: tuple[ChainedAggregate, ...] = ()
    body: dict[str, Any] = field(default_factory=dict)
    key_changes: tuple[KeyChange, ...] = ()

    def all_aggregates(self) -> tuple[ChainedAggregate, ...]:
        rest = tuple(agg for agg in self.aggregates if agg is not self.target)
        return (self.target, *rest)


@dataclass(frozen=True)
class Idempotency:
    """A client's Idempotency-Key, scoped to the caller, with a fingerprint of the request."""

    principal: str
    key: str
    request_hash: str


@dataclass(frozen=True)
class CommandResult:
    """The response of an accepted command: aggregate id, its new version, the log positions."""

    aggregate_id: UUID
    version: int
    positions: list[int]
    body: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "aggregate_id": str(self.aggregate_id),
            "version": self.version,
            "position": max(self.positions),
            "positions": self.positions,
            **self.body,
        }

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> CommandResult:
        body = {k: v for k, v in stored.items() if k not in {"aggregate_id", "version", "position", "positions"}}
        return cls(UUID(stored["aggregate_id"]), stored["version"], stored["positions"], body, replayed=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


def request_fingerprint(*parts: str | bytes) -> str:
    """sha256 over the parts of a request, to tell a retry from a different request under one key."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


class Marketplace(Application[UUID]):
    """Bazaar's event-sourced write model."""

    name = "Bazaar"  # eventsourcing names the events table after it: bazaar_events

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(env=eventsourcing_env(settings))
        self.settings = settings
        self.clock = clock
        assert isinstance(self.recorder, CommandStore)  # PostgreSQL, or in memory for the handler unit tests
        self.store: CommandStore = self.recorder
        self.vault = self.store.personal_data_vault()
        self.pepper = _pepper(settings)
        self.committer = GroupCommitter(
            self._save_batch,
            max_wait_s=settings.group_commit_wait_ms / 1000,
            max_batch=settings.group_commit_max_batch,
        )

    def close(self) -> None:
        self.committer.close()
        super().close()

    def now(self) -> datetime:
        return self.clock()

    @cached_property
    def token_generations(self) -> Generations:
        """Per-user token generations: forget, a role change and a revoke bump them (see infra.tokens)."""
        if self.settings.event_store == "memory":
            return InMemoryGenerations()
        return TokenGenerations(self.settings)

    def email_hash(self, email: str) -> str:
        """Keyed hash of an e-mail address: a lookup key that does not reveal the address."""
        return hmac.new(self.pepper, email.strip().lower().encode(), hashlib.sha256).hexdigest()

    def load(self, cls: type[A], aggregate_id: UUID, *, if_match: int | None = None) -> A:
        """The aggregate of that class, or NotFoundError; VersionConflict when If-Match is stale."""
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(f"{cls.__name__.lower()} not found", id=aggregate_id) from None
        if not isinstance(aggregate, cls):
            raise NotFoundError(f"{cls.__name__.lower()} not found", id=aggregate_id)
        if if_match is not None and aggregate.version != if_match:
            raise VersionConflict(aggregate_id, aggregate.version)
        if (reads := _READS.get()) is not None:
            reads.setdefault(aggregate_id, aggregate.version)
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        found = aggregate_id in self.repository
        if not found and (reads := _READS.get()) is not None:
            reads.setdefault(aggregate_id, None)
        return found

    def wallet(self, owner_id: UUID, currency: str) -> Wallet:
        """The owner's wallet in a currency, opened (unsaved) when there is none yet."""
        wallet_id = wallet_id_for(owner_id, currency)
        if self.exists(wallet_id):
            return self.load(Wallet, wallet_id)
        return Wallet.open(owner_id=owner_id, currency=currency, now=self.now())

    def run(
        self,
        act: Callable[[], Change],
        *,
        idempotency: Idempotency | None = None,
        if_match: int | None = None,
    ) -> CommandResult:
        """Execute a command: replay a known key, commit the change, retry unpinned races."""
        if idempotency is not None and (stored := self._replay(idempotency)) is not None:
            return stored
        for attempt in range(1, MAX_ATTEMPTS + 1):
            change = self._act_on_fresh_reads(act, last=attempt == MAX_ATTEMPTS)
            if change is None:
                continue  # refused on a torn read: run again on fresh state
            try:
                return self._commit(change, idempotency)
            except ConcurrencyConflict:
                if idempotency is not None and (stored := self._replay(idempotency)) is not None:
                    return stored
                if if_match is not None:
                    raise VersionConflict(change.target.id, self._version_of(change.target.id)) from None
        assert change is not None  # the last attempt acts without the stale-read escape
        raise VersionConflict(change.target.id, self._version_of(change.target.id))

    def _act_on_fresh_reads(self, act: Callable[[], Change], *, last: bool) -> Change | None:
        """The handler's change; its domain error if nothing it read moved meanwhile (or `last`), else None."""
        reads: dict[UUID, int | None] = {}
        token = _READS.set(reads)
        try:
            return act()
        except DomainError:
            if not last and any(self._version_of(aggregate_id) != version for aggregate_id, version in reads.items()):
                log.info("command.refused_on_stale_read", aggregates=len(reads))
                return None
            raise
        finally:
            _READS.reset(token)

    def _version_of(self, aggregate_id: UUID) -> int | None:
        try:
            return int(self.repository.get(aggregate_id).version)
        except AggregateNotFoundError:
            return None

    def _commit(self, change: Change, idempotency: Idempotency | None) -> CommandResult:
        events = [event for agg in change.all_aggregates() for event in agg.collect_events()]
        target = change.target
        record = None
        if idempotency is not None:
            # The recorder adds "positions" once the insert assigned them, in the same transaction.
            stored = {"aggregate_id": str(target.id), "version": target.version, **change.body}
            record = IdempotencyRecord(
                idempotency.key, idempotency.principal, idempotency.request_hash, len(events), stored
            )
        positions = self.committer.commit(CommitUnit(events, record, change.key_changes))
        return CommandResult(target.id, target.version, positions, change.body)

    def _replay(self, idempotency: Idempotency) -> CommandResult | None:
        found = self.store.find_idempotent_response(idempotency.principal, idempotency.key)
        if found is None:
            return None
        request_hash, response = found
        if request_hash != idempotency.request_hash:
            raise IdempotencyKeyReused("this Idempotency-Key was used for another request", key=idempotency.key)
        return CommandResult.from_stored(response)

    def _save_batch(
        self, events: list[Any], records: list[IdempotencyRecord], key_changes: list[KeyChange]
    ) -> list[int]:
        # The event store directly: Application.save would re-collect and type-check every event again.
        recordings = self.events.put(events, idempotency=records, key_changes=key_changes)
        return [recording.notification.id for recording in recordings]


def _pepper(settings: Settings) -> bytes:
    """Secret key of the e-mail lookup hash, generated once under the secrets folder."""
    return bytes.fromhex(stored_secret(settings, "email.pepper", lambda: secrets.token_hex(32)))
