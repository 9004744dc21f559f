"""The fast canonical encoder writes exactly the bytes of the reference walk, or defers to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.chain import _canonical, canonical_json


class Colour(StrEnum):
    RED = "red"


class Size(Enum):
    BIG = 3


def reference(value: Any) -> bytes:
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(),
    st.uuids(), st.datetimes(timezones=st.just(UTC)), st.sampled_from([Colour.RED, Size.BIG]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(st.text(max_size=5), inner, max_size=4),
), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(values)
def test_fast_path_matches_the_reference_walk(value: Any) -> None:
    assert canonical_json({"v": value}) == reference({"v": value})


def test_values_without_one_text_form_are_still_refused() -> None:
    from decimal import Decimal

    import pytest

    for bad in (Decimal("1.5"), float("nan"), object()):
        with pytest.raises(TypeError):
            canonical_json({"x": bad})
    assert canonical_json({UUID(int=1): datetime(2026, 1, 1, tzinfo=UTC)}) == reference(
        {UUID(int=1): datetime(2026, 1, 1, tzinfo=UTC)})
