"""The trend job's state in Redis, and the one MULTI/EXEC that commits a batch with its Kafka offsets.

Keys under `{prefix}job:{name}:`:
  offsets          hash partition -> next offset to read (the only offsets that count)
  partition_max    hash partition -> largest event time (ms) seen there
  meta             hash closed_upto, events, late_dropped, late_accepted, undecodable, windows_closed,
                   last_output_ms
  epoch            incremented by each start: a commit from an older instance fails (fencing)
  panes            set of pane ids; pane:{id} hash of k:{kind} / c:{category} counts; actors:{id} set
  closed_volumes   hash `window|scope|key|end` -> volume, for velocities

Because offsets, window state and the read models (rankings, the SSE update stream) change in one
transaction, a restart resumes exactly after the last committed record: nothing is counted twice or lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from schemas.activity import TrendItemPublic, TrendKeys, TrendsUpdate, TrendWindow
from stream_jobs.windows import BatchResult, Pane, PaneKey, WindowState

# Replace a ranking with a newer window's only: ARGV start_ms, revision, ttl_s, end_ms, then member, score,
# details triples. Older or equal windows are skipped, so a replay (or a second job) never rolls it back.
REPLACE_RANKING = """
local kept_start = tonumber(redis.call('HGET', KEYS[3], 'start_ms') or '-1')
local kept_rev = tonumber(redis.call('HGET', KEYS[3], 'revision') or '0')
local start, rev = tonumber(ARGV[1]), tonumber(ARGV[2])
if start < kept_start or (start == kept_start and rev <= kept_rev) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
for i = 5, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
redis.call('HSET', KEYS[3], 'start_ms', ARGV[1], 'revision', ARGV[2], 'end_ms', ARGV[4])
local ttl = tonumber(ARGV[3])
for k = 1, 3 do if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('EXPIRE', KEYS[k], ttl) end end
return 1
"""
UPDATES_MAXLEN = 10_000
TOP_PER_UPDATE = 10


class Fenced(RuntimeError):
    """Another instance of the job started after this one: this one must stop writing."""


@dataclass(frozen=True)
class JobKeys:
    """Redis keys of one job's state."""

    prefix: str
    name: str

    def key(self, suffix: str) -> str:
        return f"{self.prefix}job:{self.name}:{suffix}"

    def pane(self, pane: PaneKey) -> str:
        return self.key(f"pane:{pane.id}")

    def actors(self, pane: PaneKey) -> str:
        return self.key(f"actors:{pane.id}")


@dataclass(frozen=True)
class RankingTtl:
    """How long the rankings of each window length live after their last update."""

    five_minutes_s: int
    hour_s: int

    def of(self, window: str) -> int:
        return self.five_minutes_s if window == "5m" else self.hour_s


class TrendStore:
    """Loads the job's state and commits batches atomically; writes the rankings and updates it derives."""

    def __init__(self, client: redis.Redis, keys: JobKeys, trend_keys: TrendKeys, ttl: RankingTtl) -> None:
        # redis-py's stubs type every reply as `Awaitable | value` (sync and async share them): Any here.
        self.client: Any = client
        self.keys = keys
        self.trend_keys = trend_keys
        self.ttl = ttl
        self.epoch: int | None = None
        self._replace = client.register_script(REPLACE_RANKING)

    def claim(self) -> int:
        """Become the one writer: later commits of any older instance fail with Fenced."""
        self.epoch = int(self.client.incr(self.keys.key("epoch")))
        return self.epoch

    def load(self) -> WindowState:
        """The committed state, panes and all."""
        c, k = self.client, self.keys
        meta = c.hgetall(k.key("meta"))
        state = WindowState(
            offsets={int(p): int(o) for p, o in c.hgetall(k.key("offsets")).items()},
            partition_max={int(p): int(t) for p, t in c.hgetall(k.key("partition_max")).items()},
            closed_volumes={f: int(v) for f, v in c.hgetall(k.key("closed_volumes")).items()},
        )
        if "closed_upto" in meta:
            state.closed_upto = int(meta["closed_upto"])
        pane_keys = [PaneKey.parse(pane_id) for pane_id in c.smembers(k.key("panes"))]
        pipe = c.pipeline(transaction=False)
        for pane_key in pane_keys:
            pipe.hgetall(k.pane(pane_key))
            pipe.smembers(k.actors(pane_key))
        replies = pipe.execute()
        for index, pane_key in enumerate(pane_keys):
            counts, actors = replies[2 * index], replies[2 * index + 1]
            state.panes[pane_key] = _pane(counts, actors)
        return state

    def meta(self) -> dict[str, str]:
        result: dict[str, str] = self.client.hgetall(self.keys.key("meta"))
        return result

    def commit(self, result: BatchResult, panes: Mapping[PaneKey, Pane], now_ms: int) -> None:
        """Write the batch (its panes as they now are), its offsets, the closed windows' rankings and updates
        in one MULTI/EXEC."""
        epoch_key = self.keys.key("epoch")
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(epoch_key)
            if int(pipe.get(epoch_key) or 0) != self.epoch:
                raise Fenced(f"job {self.keys.name}: a newer instance holds epoch {pipe.get(epoch_key)}")
            pipe.multi()
            self._write_state(pipe, result, panes)
            if result.closed:
                self._write_outputs(pipe, result.closed, now_ms)
            try:
                pipe.execute()
            except redis.WatchError as error:
                raise Fenced(f"job {self.keys.name}: epoch changed during a commit") from error

    def _write_state(self, pipe: Any, result: BatchResult, panes: Mapping[PaneKey, Pane]) -> None:
        k = self.keys
        touched = [key for key in result.deltas if key in panes]  # a pane closed in this batch is gone
        for pane_key in touched:
            # Absolute counts from the job's copy (loaded from here at start): one command per pane.
            pane = panes[pane_key]
            fields = {f"k:{kind}": n for kind, n in pane.kinds.items()}
            fields.update({f"c:{category}": n for category, n in pane.categories.items()})
            pipe.hset(k.pane(pane_key), mapping=fields)
            if result.deltas[pane_key].new_actors:
                pipe.sadd(k.actors(pane_key), *result.deltas[pane_key].new_actors)
        if touched:
            pipe.sadd(k.key("panes"), *(pane_key.id for pane_key in touched))
        for pane_key in result.dropped_panes:
            pipe.delete(k.pane(pane_key), k.actors(pane_key))
            pipe.srem(k.key("panes"), pane_key.id)
        if result.offsets:
            pipe.hset(k.key("offsets"), mapping={str(p): o for p, o in result.offsets.items()})
        if result.partition_max:
            pipe.hset(k.key("partition_max"), mapping={str(p): t for p, t in result.partition_max.items()})
        if result.closed_volumes:
            pipe.hset(k.key("closed_volumes"), mapping=result.closed_volumes)
        if result.expired_volumes:
            pipe.hdel(k.key("closed_volumes"), *result.expired_volumes)
        meta = k.key("meta")
        for name, n in (("events", result.events), ("late_dropped", result.late_dropped),
                        ("late_accepted", result.late_accepted), ("undecodable", result.undecodable),
                        ("windows_closed", len(result.closed))):
            if n:
                pipe.hincrby(meta, name, n)
        if result.closed_upto is not None:
            pipe.hset(meta, "closed_upto", result.closed_upto)

    def _write_outputs(self, pipe: Any, closed: list[TrendWindow], now_ms: int) -> None:
        for (_end, window), windows in sorted(_by_close(closed).items()):  # oldest close first
            for ranking, members in sorted(self._rankings(window, windows).items()):
                self._replace_ranking(pipe, ranking, window, members)
            update = _update(window, windows)
            pipe.xadd(self.trend_keys.updates, {"data": update.model_dump_json()}, maxlen=UPDATES_MAXLEN,
                      approximate=True)
        pipe.hset(self.keys.key("meta"), "last_output_ms", now_ms)

    def _rankings(self, window: str, windows: list[TrendWindow]) -> dict[str, list[TrendWindow]]:
        t = self.trend_keys
        rankings: dict[str, list[TrendWindow]] = {}
        for item in windows:
            if item.scope == "category":
                rankings.setdefault(t.categories(window), []).append(item)
                continue
            rankings.setdefault(t.listings(window), []).append(item)
            if item.category is not None:
                rankings.setdefault(t.listings_in_category(window, item.category), []).append(item)
        return rankings

    def _replace_ranking(self, pipe: Any, ranking: str, window: str, members: list[TrendWindow]) -> None:
        first = members[0]
        args: list[Any] = [int(first.start.timestamp() * 1000), first.revision, self.ttl.of(window),
                           int(first.end.timestamp() * 1000)]
        for item in members:
            args += [item.key, item.score, _item(item).model_dump_json()]
        keys = [ranking, self.trend_keys.details(ranking), self.trend_keys.meta(ranking)]
        self._replace(keys=keys, args=args, client=pipe)


def _pane(counts: dict[str, str], actors: set[str]) -> Pane:
    pane = Pane(actors=set(actors))
    for field_name, value in counts.items():
        kind, _, name = field_name.partition(":")
        target: Counter[str] = pane.kinds if kind == "k" else pane.categories
        target[name] = int(value)
    return pane


def _by_close(closed: list[TrendWindow]) -> dict[tuple[int, str], list[TrendWindow]]:
    groups: dict[tuple[int, str], list[TrendWindow]] = {}
    for item in closed:
        groups.setdefault((int(item.end.timestamp() * 1000), item.window), []).append(item)
    return groups


def _item(window: TrendWindow) -> TrendItemPublic:
    return TrendItemPublic(key=window.key, category=window.category, score=window.score, volume=window.volume,
                           unique_users=window.unique_users, velocity=window.velocity)


def _update(window: str, windows: list[TrendWindow]) -> TrendsUpdate:
    def top(scope: str) -> list[TrendItemPublic]:
        ranked = sorted((w for w in windows if w.scope == scope), key=lambda w: (-w.score, w.key))
        return [_item(w) for w in ranked[:TOP_PER_UPDATE]]

    first = windows[0]
    return TrendsUpdate(window=window,  # type: ignore[arg-type]
                        start=first.start, end=first.end, categories=top("category"), listings=top("listing"))
