"""Group commit: concurrent commands gathered for a few milliseconds and saved in one transaction.

eventsourcing's recorder locks the events table for each insert, so one transaction per command caps
the write side near a thousand commands a second. Saving what arrives together in one transaction keeps
full durability (fsync per commit) while paying the lock and the fsync once per batch. No library offers
this for eventsourcing, hence the code here.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError

from commands.personal_data import KeyChange
from commands.store import IdempotencyRecord

log = structlog.get_logger(__name__)


class ConcurrencyConflict(Exception):
    """Another command wrote the same aggregate version first."""


class Outcome:
    """A one-shot result handed from the writer thread to one waiting caller.

    A pre-acquired lock is the cheapest wake-up CPython has; with dozens of callers per batch a
    Future's condition variable was a measurable share of each command's CPU.
    """

    __slots__ = ("_done", "_ids", "_error")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self._ids: list[int] = []
        self._error: BaseException | None = None

    def set_result(self, ids: list[int]) -> None:
        self._ids = ids
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done.release()

    def result(self, timeout: float) -> list[int]:
        if not self._done.acquire(timeout=timeout):
            raise TimeoutError("the group commit did not answer in time")
        if self._error is not None:
            raise self._error
        return self._ids


@dataclass
class CommitUnit:
    """The events one command produced, saved all or nothing with its idempotency record and key changes."""

    events: Sequence[Any]
    idempotency: IdempotencyRecord | None = None
    key_changes: Sequence[KeyChange] = ()
    future: Outcome = field(default_factory=Outcome)

    def keys(self) -> set[tuple[UUID, int]]:
        return {(event.originator_id, event.originator_version) for event in self.events}


# Saves the events of a whole batch, its idempotency records and key changes in one transaction and
# returns the events' notification ids in order.
SaveBatch = Callable[[list[Any], list[IdempotencyRecord], list[KeyChange]], list[int]]


class GroupCommitter:
    """A single writer thread that drains a queue of units into batched transactions."""

    def __init__(self, save_batch: SaveBatch, max_wait_s: float = 0.002, max_batch: int = 512) -> None:
        self._save_batch = save_batch
        self._max_wait_s = max_wait_s
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[CommitUnit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def commit(self, unit: CommitUnit, timeout: float = 30.0) -> list[int]:
        """Queue a unit and block until it is durable (its log positions) or refused."""
        self._queue.put(unit)
        return unit.future.result(timeout=timeout)

    def close(self) -> None:
        """Finish queued work, then stop the writer thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first, *self._gather()]
            stop = batch[-1] is None
            self._commit([unit for unit in batch if unit is not None])
            if stop:
                return

    def _gather(self) -> list[CommitUnit | None]:
        """Whatever else arrives within max_wait_s, up to max_batch."""
        gathered: list[CommitUnit | None] = []
        deadline = time.monotonic() + self._max_wait_s
        while len(gathered) < self._max_batch - 1:
            remaining = deadline - time.monotonic()
            try:
                unit = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            gathered.append(unit)
            if unit is None:
                break
        return gathered

    def _commit(self, batch: list[CommitUnit]) -> None:
        accepted, clashing = self._split_clashes(batch)
        try:
            self._commit_accepted(accepted)
        finally:
            # Refused only after the winners are durable, so a loser re-reading sees the new version.
            for unit in clashing:
                unit.future.set_exception(ConcurrencyConflict())

    def _commit_accepted(self, accepted: list[CommitUnit]) -> None:
        if not accepted:
            return
        try:
            ids = self._save(accepted)
        except IntegrityError:
            if len(accepted) == 1:
                accepted[0].future.set_exception(ConcurrencyConflict())
                return
            # Somebody in the batch is stale: save each alone so only the stale ones are refused.
            for unit in accepted:
                self._commit_accepted([unit])
            return
        except Exception as exc:  # a store failure answers every waiting caller
            log.error("group_commit.failed", error=repr(exc), batch=len(accepted))
            for unit in accepted:
                unit.future.set_exception(exc)
            return
        self._resolve(accepted, ids)

    def _save(self, units: list[CommitUnit]) -> list[int]:
        events = [event for unit in units for event in unit.events]
        records = [
            unit.idempotency or IdempotencyRecord("", "", "", len(unit.events), {}) for unit in units
        ]
        key_changes = [change for unit in units for change in unit.key_changes]
        return self._save_batch(events, records, key_changes)

    @staticmethod
    def _split_clashes(batch: list[CommitUnit]) -> tuple[list[CommitUnit], list[CommitUnit]]:
        """Two units writing the same aggregate version: the first one queued wins."""
        seen: set[tuple[UUID, int]] = set()
        accepted, clashing = [], []
        for unit in batch:
            keys = unit.keys()
            if keys & seen:
                clashing.append(unit)
                continue
            seen |= keys
            accepted.append(unit)
        return accepted, clashing

    @staticmethod
    def _resolve(units: list[CommitUnit], ids: list[int]) -> None:
        start = 0
        for unit in units:
            unit.future.set_result(ids[start : start + len(unit.events)])
            start += len(unit.events)
