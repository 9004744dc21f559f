"""GET /v1/trends (the latest closed window's ranking) and GET /v1/trends/stream (each close, as SSE)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from read_api.errors import InvalidRequest
from read_api.models import ErrorPublic
from read_api.streams import Streams, StreamsContext
from schemas.activity import TrendItemPublic, TrendsPublic, WindowName

router = APIRouter(prefix="/v1", tags=["trends"])
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorPublic, "description": "A malformed parameter or Last-Event-ID (`request.invalid`)."},
    429: {"model": ErrorPublic, "description": "Too many requests from this address (`rate.limited`)."},
}


@router.get("/trends", responses=RESPONSES)
def get_trends(
    streams: Streams,
    window: Annotated[WindowName, Query(description="5m tumbling or 1h hopping (every 5 minutes)")] = "1h",
    category: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    scope: Annotated[Literal["category", "listing"] | None,
                     Query(description="default: listings within `category`, else categories")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> TrendsPublic:
    """The top categories or listings of the latest closed window, by trending score."""
    scope = scope or ("listing" if category else "category")
    if scope == "category" and category is not None:
        raise InvalidRequest("category filters listings: leave scope out or set scope=listing",
                             {"scope": scope, "category": category})
    keys = streams.trend_keys
    if scope == "category":
        ranking = keys.categories(window)
    else:
        ranking = keys.listings_in_category(window, category) if category else keys.listings(window)
    return read_ranking(streams, ranking, window, scope, category, limit)


def read_ranking(streams: StreamsContext, ranking: str, window: WindowName, scope: Literal["category", "listing"],
                 category: str | None, limit: int) -> TrendsPublic:
    """Top `limit` members with their details, read in one round trip."""
    keys = streams.trend_keys
    pipe = streams.redis.pipeline(transaction=True)
    pipe.zrevrange(ranking, 0, limit - 1)
    pipe.hgetall(keys.meta(ranking))
    members, meta = pipe.execute()
    details = streams.redis.hmget(keys.details(ranking), members) if members else []
    items = [TrendItemPublic.model_validate_json(text) for text in details if text is not None]
    return TrendsPublic(window=window, scope=scope, category=category, start=_moment(meta.get("start_ms")),
                        end=_moment(meta.get("end_ms")), items=items)


def _moment(ms: str | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, UTC)


@router.get("/trends/stream", responses={**RESPONSES, 200: {"content": {"text/event-stream": {}},
                                                            "description": "Server-Sent Events"}})
async def stream_trends(
    streams: Streams,
    last_event_id: Annotated[str | None, Header(description="resume after this event id")] = None,
    after: Annotated[str | None, Query(description="the same as Last-Event-ID, for clients that cannot "
                                                   "set headers")] = None,
) -> StreamingResponse:
    """Every closed window (5m and 1h, top categories and listings) as it closes; resumes after Last-Event-ID."""
    start = last_event_id or after
    if start is not None and not STREAM_ID.match(start):
        raise InvalidRequest("Last-Event-ID must be an id this stream sent (`<ms>-<seq>`)",
                             {"last_event_id": start})
    return StreamingResponse(sse_events(streams, start or "$"), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def sse_events(streams: StreamsContext, after: str) -> AsyncIterator[str]:
    """`id`/`event`/`data` frames from the Redis stream of updates; a comment when quiet (keeps proxies open)."""
    key = streams.trend_keys.updates
    if after == "$":
        # "$" means "after the newest entry now": pin it, so a window closing between two reads is not skipped.
        newest = await streams.aredis.xrevrange(key, count=1)
        after = newest[0][0] if newest else "0-0"
    yield "retry: 2000\n\n"
    block_ms = int(streams.sse_keepalive_s * 1000)
    while True:
        replies = await streams.aredis.xread({key: after}, block=block_ms, count=100)
        if not replies:
            yield ": keepalive\n\n"
            continue
        for entry_id, fields in replies[0][1]:
            after = entry_id
            update = json.loads(fields["data"])
            yield f"id: {entry_id}\nevent: trends.{update['window']}\ndata: {fields['data']}\n\n"
