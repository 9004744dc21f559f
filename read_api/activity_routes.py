"""POST /v1/activity: a batch of views, searches, cart adds, clicks and contacts, into bazaar.activity."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import structlog
from fastapi import APIRouter
from kafka.errors import KafkaError

from read_api.deps import Context, MaybeCaller
from read_api.errors import ReadError
from read_api.models import ErrorPublic
from read_api.streams import Streams, StreamsContext
from schemas.activity import (
    MAX_CLOCK_SKEW_S,
    SESSION_ID_PATTERN,
    ActivityAccepted,
    ActivityBatch,
    ActivityBatchIn,
    ActivityEvent,
    ActivityIn,
)

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1", tags=["activity"])
SESSION_PATTERN = re.compile(SESSION_ID_PATTERN)
KNOWN_LISTINGS_SQL = "SELECT listing_id, category FROM rm_listings WHERE listing_id = ANY(%s)"


class ActivityRefused(ReadError):
    """A batch that cannot be accepted as a whole (nothing of it is published)."""

    status = 422
    code = "activity.invalid"


class TimeOutOfRange(ActivityRefused):
    code = "activity.time_out_of_range"


class SessionRequired(ActivityRefused):
    code = "activity.session_required"


class ActivityUnavailable(ReadError):
    status = 503
    code = "activity.unavailable"


RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorPublic, "description": "An invalid or expired bearer token (no token is anonymous)."},
    422: {"model": ErrorPublic, "description": "Malformed batch (`request.invalid`), an event time more than a "
                                               "day off (`activity.time_out_of_range`) or an anonymous event "
                                               "without session_id (`activity.session_required`)."},
    429: {"model": ErrorPublic, "description": "Too many requests from this address (`rate.limited`)."},
    503: {"model": ErrorPublic, "description": "The broker did not acknowledge the batch (`activity.unavailable`)."},
}


@router.post("/activity", status_code=202, responses=RESPONSES, openapi_extra={"security": [{}]})
def post_activity(batch: ActivityBatchIn, caller: MaybeCaller, context: Context, streams: Streams) -> ActivityAccepted:
    """Record up to 500 activity events; 202 once the broker holds every one of them (acks=all)."""
    now = datetime.now(UTC)
    check_times(batch.events, now)
    user_id = caller.user_id if caller is not None else None
    if user_id is None:
        check_sessions(batch.events)
    known = known_listings(context.pool, {e.listing_id for e in batch.events if e.listing_id is not None})
    events = [to_event(item, user_id, known, now) for item in batch.events]
    produce(streams, events)
    unknown = sum(1 for e in events if e.listing_known is False)
    streams.redis.hincrby(streams.stats_key, "accepted", len(events))
    if unknown:
        streams.redis.hincrby(streams.stats_key, "unknown_listings", unknown)
    return ActivityAccepted(accepted=len(events), unknown_listings=unknown)


def check_times(events: Sequence[ActivityIn], now: datetime) -> None:
    """Refuse the batch when any event time is more than a day from the server's clock."""
    skew = timedelta(seconds=MAX_CLOCK_SKEW_S)
    wrong = [{"index": i, "occurred_at": e.occurred_at.isoformat()} for i, e in enumerate(events)
             if abs(e.occurred_at - now) > skew]
    if wrong:
        raise TimeOutOfRange(f"event times must lie within {MAX_CLOCK_SKEW_S // 3600} h of the server's clock",
                             {"events": wrong, "server_time": now.isoformat()})


def check_sessions(events: Sequence[ActivityIn]) -> None:
    missing = [i for i, e in enumerate(events) if e.session_id is None]
    if missing:
        raise SessionRequired("anonymous events need a session_id (or send a bearer token)",
                              {"indexes": missing})


def known_listings(pool: Any, listing_ids: set[UUID]) -> dict[UUID, str] | None:
    """listing id -> category for the ids the listing view knows; None when it cannot be asked."""
    if not listing_ids:
        return {}
    try:
        with pool.connection() as conn:
            rows = conn.execute(KNOWN_LISTINGS_SQL, (list(listing_ids),)).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError) as error:
        # Activity is accepted while the listing view is missing or down; the events say "not checked".
        log.warning("activity.listings.unchecked", error=str(error).splitlines()[0])
        return None
    return {row[0]: row[1] for row in rows}


def to_event(item: ActivityIn, user_id: UUID | None, known: dict[UUID, str] | None, now: datetime) -> ActivityEvent:
    listing_known = None if known is None or item.listing_id is None else item.listing_id in known
    category = item.category
    if category is None and known and item.listing_id in known:
        category = known[item.listing_id]
    # Every field was validated as ActivityIn or comes from the token: skip validating it all again.
    return ActivityEvent.model_construct(
        event_id=uuid.uuid4(), kind=item.kind,
        actor=f"user:{user_id}" if user_id is not None else f"session:{item.session_id}",
        user_id=user_id, listing_id=item.listing_id, listing_known=listing_known, category=category,
        query=item.query, occurred_at=item.occurred_at, received_at=now,
    )


def produce(streams: StreamsContext, events: Sequence[ActivityEvent]) -> None:
    """Send the batch as one record (key = the caller's actor: a client's batches stay in order) and wait for
    the broker's acknowledgement (acks=all)."""
    batch = ActivityBatch.model_construct(batch_id=uuid.uuid4(), events=list(events))
    try:
        future = streams.producer.send(streams.activity_topic, key=events[0].actor.encode(),
                                       value=batch.model_dump_json().encode(), headers=_headers())
        future.get(timeout=streams.produce_timeout_s)
    except KafkaError as error:
        log.warning("activity.produce.failed", error=str(error))
        raise ActivityUnavailable("the broker did not acknowledge the batch; retry it",
                                  {"error": type(error).__name__}) from error


def _headers() -> list[tuple[str, bytes]]:
    return [("schema_name", ActivityBatch.schema_name.encode()),
            ("schema_version", str(ActivityBatch.schema_version).encode())]


def emit_search(streams: StreamsContext, user_id: UUID | None, query: str, category: str | None,
                session_id: str | None) -> None:
    """Publish a `search` event for a search this API served: sent, not awaited (a search never waits on the
    broker); a send that fails is logged. Anonymous searches without a valid session id share one actor."""
    now = datetime.now(UTC)
    session = session_id if session_id and SESSION_PATTERN.match(session_id) else "anonymous"
    item = ActivityIn.model_construct(kind="search", occurred_at=now, listing_id=None, category=category,
                                      query=query[:500], session_id=session)
    event = to_event(item, user_id, None, now)
    batch = ActivityBatch.model_construct(batch_id=uuid.uuid4(), events=[event])
    future = streams.producer.send(streams.activity_topic, key=event.actor.encode(),
                                   value=batch.model_dump_json().encode(), headers=_headers())
    future.add_errback(lambda error: log.warning("activity.search_event.failed", error=str(error)))
