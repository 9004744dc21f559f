"""Cross-field rules of commands, as JSON Schema, so the published documents state what the validators check.

Each command's `model_validator` enforces its rule; the same rule goes into its JSON Schema (and so into the
command API's OpenAPI document) with these helpers. "Given" means present and not null; "absent" means
missing or null, as the validators read `None`.
"""

from __future__ import annotations

from typing import Any

JsonSchema = dict[str, Any]


def given(field: str) -> JsonSchema:
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


def absent(field: str) -> JsonSchema:
    return {"properties": {field: {"type": "null"}}}


def is_(field: str, value: str) -> JsonSchema:
    return {"required": [field], "properties": {field: {"const": value}}}


def is_not(field: str, value: str) -> JsonSchema:
    return {"properties": {field: {"not": {"const": value}}}}


def at_least_one(*fields: str) -> JsonSchema:
    return {"anyOf": [given(field) for field in fields]}


def exactly_one(first: str, second: str) -> JsonSchema:
    return {"oneOf": [{"allOf": [given(first), absent(second)]}, {"allOf": [given(second), absent(first)]}]}


def given_only_when(field: str, kind_field: str, kind: str) -> JsonSchema:
    """`field` is given exactly when `kind_field` is `kind`."""
    return {"anyOf": [{"allOf": [is_(kind_field, kind), given(field)]},
                      {"allOf": [is_not(kind_field, kind), absent(field)]}]}


def all_of(*rules: JsonSchema) -> JsonSchema:
    return {"allOf": list(rules)}
