"""The auto-boost agent (Faust): closed 5-minute windows -> the boost rule -> BoostListing on the write side.

Three agents share one Faust app (one process, `boost-agent`):
- `auto-boost-enrolment` reads `bazaar.listing` and keeps which listings' sellers enabled auto-boost (Redis hash,
  written only by a newer aggregate version, so a replay changes nothing);
- `auto-boost` reads `bazaar.trends`: it pairs each listing's 5-minute window with its category's window of the
  same end, applies `boost_rule`, and for an enrolled listing that passes sends BoostListing over HTTP with the
  Idempotency-Key `auto-boost:{listing}:{window start}`: a window read twice (a replay, a restart, the trend job
  publishing it again) appends one Listing.Boosted at most; then it files the listing in `feed:promoted:{category}`;
- `recent-activity` (stream_jobs.recent_activity) keeps each user's recent activity for the feed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
import httpx
import structlog

from infra.adapters.kafka import bootstrap_servers
from infra.adapters.redis import make_redis
from infra.settings import Settings
from infra.tokens import TokenService, jwt_secret
from schemas import names
from schemas.activity import ActivityBatch, TrendWindow
from schemas.messages import PoisonMessage, decode_event
from stream_jobs.recent_activity import RecentActivity
from stream_jobs.windows import to_ms

log = structlog.get_logger(__name__)
BOOST_AGENT = "boost"
# The agent's service principal: a fixed id, so its idempotency keys stay its own across restarts.
SERVICE_USER_ID = uuid.uuid5(uuid.NAMESPACE_URL, "bazaar:service:auto-boost-agent")
PENDING_TTL_S = 2 * 3600
ENROLMENT_EVENTS = {"ListingAutoBoostEnabled": True, "ListingAutoBoostDisabled": False}


@dataclass(frozen=True)
class BoostRule:
    """Boost when the listing beats its category peers on both rates, by `lift`, with enough views on both sides.

    ctr = clicks / views, contact = contact_seller / views; peers = the category's window less the listing's own.
    """

    min_views: int = 20
    min_peer_views: int = 20
    lift: float = 1.5


@dataclass(frozen=True)
class Verdict:
    """What the rule found for one listing window."""

    boost: bool
    ctr: float
    contact_rate: float
    peer_ctr: float
    peer_contact_rate: float
    reason: str


def _rates(kinds: dict[str, int]) -> tuple[int, float, float]:
    views = kinds.get("view", 0)
    if views <= 0:
        return 0, 0.0, 0.0
    return views, kinds.get("click", 0) / views, kinds.get("contact_seller", 0) / views


def boost_rule(rule: BoostRule, listing: dict[str, int], category: dict[str, int]) -> Verdict:
    """The documented rule (docs/DECISIONS.md, Auto-boost and feed)."""
    peers = {kind: max(category.get(kind, 0) - listing.get(kind, 0), 0) for kind in category}
    views, ctr, contact = _rates(listing)
    peer_views, peer_ctr, peer_contact = _rates(peers)
    if views < rule.min_views:
        reason = f"views {views} < {rule.min_views}"
    elif peer_views < rule.min_peer_views:
        reason = f"peer views {peer_views} < {rule.min_peer_views}"
    elif not (ctr > peer_ctr and ctr >= rule.lift * peer_ctr):
        reason = f"ctr {ctr:.3f} not >= {rule.lift} x peers {peer_ctr:.3f}"
    elif not (contact > peer_contact and contact >= rule.lift * peer_contact):
        reason = f"contact rate {contact:.3f} not >= {rule.lift} x peers {peer_contact:.3f}"
    else:
        return Verdict(True, ctr, contact, peer_ctr, peer_contact, "over the threshold")
    return Verdict(False, ctr, contact, peer_ctr, peer_contact, reason)


@dataclass(frozen=True)
class BoostAgentConfig:
    """What the agent reads and writes; tests isolate themselves with the prefixes and the name."""

    command_api_url: str
    name: str = BOOST_AGENT
    trends_prefix: str = names.TOPIC_PREFIX
    listing_prefix: str = names.TOPIC_PREFIX
    redis_prefix: str = ""
    boost_duration_s: int = 3600
    rule: BoostRule = BoostRule()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> BoostAgentConfig:
        values: dict[str, Any] = {
            "command_api_url": settings.boost_command_api_url or f"http://{settings.bind_host}:{settings.command_api_port}",
            "boost_duration_s": settings.boost_duration_s,
            "rule": BoostRule(settings.boost_min_views, settings.boost_min_peer_views, settings.boost_lift),
        }
        return cls(**{**values, **overrides})

    @property
    def trends_topic(self) -> str:
        return names.topic(names.TRENDS_TOPIC, self.trends_prefix)

    @property
    def listing_topic(self) -> str:
        return names.domain_topic("listing", self.listing_prefix)

    @property
    def activity_topic(self) -> str:
        return names.topic(names.ACTIVITY_TOPIC, self.trends_prefix)

    def key(self, *parts: str) -> str:
        return f"{self.redis_prefix}{':'.join(parts)}"

    @property
    def meta_key(self) -> str:
        """Counters read by `bazaar jobs status`."""
        return self.key("jobs", self.name, "meta")

    def promoted_key(self, segment: str) -> str:
        return f"{self.redis_prefix}{names.PROMOTED_KEY_PREFIX}{segment}"


class BoostCore:
    """The agent's work, synchronous (Faust runs it in a thread): enrolment, pairing, the rule, the command."""

    def __init__(self, settings: Settings, config: BoostAgentConfig) -> None:
        self.config = config
        self.redis: Any = make_redis(settings)  # redis-py's stubs type replies as `Awaitable | value`
        token = TokenService(jwt_secret(settings), 10 * 365 * 86400).issue(SERVICE_USER_ID, "admin")
        self.http = httpx.Client(base_url=config.command_api_url.rstrip("/") + "/v1", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})

    def on_listing_event(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Record an enrolment change when it is newer than the one stored."""
        try:
            event = decode_event(value, headers)
        except PoisonMessage:
            return
        enabled = ENROLMENT_EVENTS.get(event.schema_name)
        if enabled is None:
            return
        key, field = self.config.key("boost", "enrolled"), str(event.aggregate_id)
        stored = self.redis.hget(key, field)
        if stored is None or int(stored.split(":")[0]) < event.version:
            self.redis.hset(key, field, f"{event.version}:{int(enabled)}")

    def enrolled(self, listing_id: str) -> bool:
        stored = self.redis.hget(self.config.key("boost", "enrolled"), listing_id)
        return stored is not None and stored.endswith(":1")

    def on_window(self, value: bytes) -> list[str]:
        """File a 5-minute window; evaluate every listing whose pair is complete. Returns the outcomes."""
        window = TrendWindow.model_validate_json(value)
        category = window.key if window.scope == "category" else window.category
        if window.window != "5m" or category is None:
            return []
        pending = self.config.key("boost", "pending", str(to_ms(window.end)), category)
        field = "category" if window.scope == "category" else window.key
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(pending, field, json.dumps(window.kinds))
        pipe.expire(pending, PENDING_TTL_S)
        pipe.hgetall(pending)
        stored: dict[str, str] = pipe.execute()[2]
        self.redis.hincrby(self.config.meta_key, "windows", 1)
        if "category" not in stored:
            return []
        listings = [field] if window.scope == "listing" else [k for k in stored if k != "category"]
        category_kinds = json.loads(stored["category"])
        return [self._evaluate(listing, json.loads(stored[listing]), category_kinds, category, window)
                for listing in listings]

    def _evaluate(self, listing_id: str, kinds: dict[str, int], category_kinds: dict[str, int], category: str,
                  window: TrendWindow) -> str:
        if not self.enrolled(listing_id):
            return "not_enrolled"
        verdict = boost_rule(self.config.rule, kinds, category_kinds)
        if not verdict.boost:
            log.info("boost.below", listing=listing_id, reason=verdict.reason)
            return "below"
        until = window.end + timedelta(seconds=self.config.boost_duration_s)
        outcome = self._boost(listing_id, until.isoformat(), f"auto-boost:{listing_id}:{window.start.isoformat()}")
        if outcome in ("boosted", "replayed"):
            self.redis.zadd(self.config.promoted_key(category), {listing_id: to_ms(until) / 1000}, gt=True)
            self.redis.hset(self.config.meta_key, "last_output_ms", int(time.time() * 1000))
        self.redis.hincrby(self.config.meta_key, outcome, 1)
        log.info("boost.decided", listing=listing_id, outcome=outcome, ctr=verdict.ctr,
                 peer_ctr=verdict.peer_ctr, contact=verdict.contact_rate, peer_contact=verdict.peer_contact_rate)
        return outcome

    def _boost(self, listing_id: str, until: str, key: str) -> str:
        """BoostListing through the command API; retried on transport faults and 5xx."""
        for attempt in range(5):
            try:
                response = self.http.post(f"/listings/{listing_id}/boost", json={"until": until, "source": "auto"},
                                          headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                log.warning("boost.transport", error=str(exc), attempt=attempt)
                time.sleep(0.5 * (attempt + 1))
                continue
            if response.status_code == 200:
                return "replayed" if response.headers.get("Idempotent-Replayed") == "true" else "boosted"
            if response.status_code < 500:
                log.warning("boost.refused", listing=listing_id, status=response.status_code, body=response.text[:300])
                return "refused"
            time.sleep(0.5 * (attempt + 1))
        return "failed"

    def close(self) -> None:
        self.http.close()
        self.redis.close()


def build_app(settings: Settings, config: BoostAgentConfig) -> tuple[faust.App, BoostCore, RecentActivity]:
    """The Faust app: enrolment, auto-boost and recent-activity agents (consumer group = the agent's name)."""
    app = faust.App(
        f"bazaar-agents-{config.name}", broker=[f"kafka://{server}" for server in bootstrap_servers(settings)],
        value_serializer="raw", key_serializer="raw", web_enabled=False, store="memory://",
        topic_disable_leader=True, topic_allow_declare=False, consumer_auto_offset_reset="earliest",
        datadir=str(settings.run_dir / f"faust-{config.name}"),
    )
    core = BoostCore(settings, config)
    recent = RecentActivity(make_redis(settings), config.redis_prefix)
    listing_topic = app.topic(config.listing_topic, value_type=bytes, key_type=bytes, value_serializer="raw",
                              key_serializer="raw")
    trends_topic = app.topic(config.trends_topic, value_type=bytes, key_type=bytes, value_serializer="raw",
                             key_serializer="raw")
    activity_topic = app.topic(config.activity_topic, value_type=bytes, key_type=bytes, value_serializer="raw",
                               key_serializer="raw")

    async def enrol(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            headers = [(str(k), bytes(v or b"")) for k, v in (event.message.headers or ())]
            await asyncio.to_thread(core.on_listing_event, event.message.value or b"", headers)

    async def boost(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            await asyncio.to_thread(core.on_window, value)

    async def remember(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            try:
                batch = ActivityBatch.model_validate_json(value)
            except ValueError:
                continue
            await asyncio.to_thread(recent.remember, batch)

    app.agent(listing_topic, name="auto-boost-enrolment")(enrol)
    app.agent(trends_topic, name="auto-boost")(boost)
    app.agent(activity_topic, name="recent-activity")(remember)
    return app, core, recent


def run_boost_agent(settings: Settings, config: BoostAgentConfig | None = None) -> None:
    """The platform process: run the Faust worker until SIGTERM/SIGINT."""
    app, core, recent = build_app(settings, config or BoostAgentConfig.from_settings(settings))
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        core.close()
        recent.close()
