"""Every money field of every published event and command is a bounded integer, and says so in its JSON Schema."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.base import MAX_MINOR_UNITS, MoneyIn
from schemas.registry import REGISTRY

MONEY_FIELDS = {"amount", "price_amount", "previous_amount", "seller_amount", "fee_amount", "royalty_amount"}


def _money_properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [(name, prop) for name, prop in schema.get("properties", {}).items()
             if name in MONEY_FIELDS and "$ref" not in prop]  # a MoneyIn, checked in $defs
    for sub in schema.get("$defs", {}).values():
        found += _money_properties(sub)
    return found


@pytest.mark.parametrize("model", REGISTRY.models(), ids=lambda model: model.__name__)
def test_money_fields_publish_their_bounds(model: type[BaseModel]) -> None:
    for name, prop in _money_properties(model.model_json_schema()):
        assert prop["type"] == "integer", (model.__name__, name)
        assert prop["maximum"] == MAX_MINOR_UNITS, (model.__name__, name)
        assert prop["minimum"] in (0, 1), (model.__name__, name)


def test_the_money_of_commands_has_published_bounds() -> None:
    bounded = [model for model in REGISTRY.models() if _money_properties(model.model_json_schema())]
    assert len(bounded) >= 10


@pytest.mark.parametrize("amount", [MAX_MINOR_UNITS + 1, 2**63, 0, -1, "12", "1e3", True, 12.5, float("inf"), None])
def test_out_of_range_or_loose_amounts_are_refused(amount: object) -> None:
    with pytest.raises(ValidationError):
        MoneyIn.model_validate({"amount": amount, "currency": "EUR"})


def test_json_integers_are_accepted_however_written() -> None:
    assert MoneyIn.model_validate_json('{"amount": 12.0, "currency": "EUR"}').amount == 12
    assert MoneyIn.model_validate({"amount": MAX_MINOR_UNITS, "currency": "EUR"}).amount == MAX_MINOR_UNITS
