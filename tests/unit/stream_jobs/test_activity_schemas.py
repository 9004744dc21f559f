"""The activity and trend-window schemas: validation rules, and their channels in the AsyncAPI document."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from infra.data_teams import deployed_asyncapi_document
from infra.settings import Settings
from schemas.activity import ActivityBatch, ActivityBatchIn, ActivityEvent, ActivityIn, TrendWindow

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
ASYNCAPI_SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "asyncapi" / "3.0.0.json"


def item(**fields: Any) -> dict[str, Any]:
    return {"kind": "view", "listing_id": str(uuid.uuid4()), "occurred_at": NOW.isoformat(), **fields}


@pytest.mark.parametrize(("fields", "reason"), [
    ({"listing_id": None}, "needs listing_id"),
    ({"kind": "search", "listing_id": None}, "needs query"),
    ({"occurred_at": "2026-12-02T10:00:00"}, "timezone"),
    ({"session_id": "short"}, "pattern"),
    ({"kind": "purchase"}, "Input should be"),
    ({"extra": 1}, "Extra inputs"),
])
def test_an_activity_item_needs_the_fields_its_kind_names(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        ActivityIn.model_validate(item(**fields))


def test_a_batch_holds_one_to_five_hundred_items() -> None:
    assert len(ActivityBatchIn.model_validate({"events": [item()] * 500}).events) == 500
    for size in (0, 501):
        with pytest.raises(ValidationError):
            ActivityBatchIn.model_validate({"events": [item()] * size})


def test_the_asyncapi_document_publishes_the_activity_and_trends_channels() -> None:
    document = deployed_asyncapi_document(Settings(kafka_bootstrap="127.0.0.1:59092"))
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(document)) == []
    assert document["channels"]["activity"]["address"] == "bazaar.activity"
    assert list(document["channels"]["trends"]["messages"]) == ["trends.TrendWindow.v1"]
    event = ActivityEvent(event_id=uuid.uuid4(), kind="search", actor="session:abcdefgh", query="leica",
                          category="cameras", occurred_at=NOW, received_at=NOW)
    window = TrendWindow(window="5m", scope="category", key="cameras", start=NOW, end=NOW, revision=1, volume=2,
                         unique_users=1, kinds={"view": 2}, previous_volume=0, velocity=2.0, score=2.0)
    batch = ActivityBatch(batch_id=uuid.uuid4(), events=[event])
    for message_id, instance in (("activity.ActivityBatch.v1", batch), ("trends.TrendWindow.v1", window)):
        payload = {**document["components"]["messages"][message_id]["payload"],
                   "components": document["components"]}
        jsonschema.validate(json.loads(instance.model_dump_json()), payload)
    with pytest.raises(jsonschema.ValidationError):
        bad = {**json.loads(window.model_dump_json()), "volume": -1}
        jsonschema.validate(bad, {**document["components"]["messages"]["trends.TrendWindow.v1"]["payload"],
                                  "components": document["components"]})
