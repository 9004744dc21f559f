"""The AsyncAPI document validates against the official AsyncAPI 3.0.0 JSON Schema (vendored, offline)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml
from typer.testing import CliRunner

from infra.data_teams import asyncapi_yaml, deployed_asyncapi_document, schemas_app, topic_rows, topics
from infra.settings import Settings
from schemas.registry import REGISTRY

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi" / "3.0.0.json"
SETTINGS = Settings(kafka_bootstrap="127.0.0.1:59092")


def data_teams_cli() -> typer.Typer:
    """The data teams' commands as `bazaar` mounts them."""
    cli = typer.Typer()
    cli.command("topics")(topics)
    cli.add_typer(schemas_app, name="schemas")
    return cli


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return deployed_asyncapi_document(SETTINGS)


def _errors(validator: jsonschema.protocols.Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_document_is_valid_asyncapi_3(validator: jsonschema.protocols.Validator,
                                          document: dict[str, Any]) -> None:
    assert _errors(validator, document) == []


def test_the_yaml_on_stdout_is_the_same_valid_document(validator: jsonschema.protocols.Validator) -> None:
    result = CliRunner().invoke(data_teams_cli(), ["schemas", "asyncapi"])
    assert result.exit_code == 0, result.output
    parsed = yaml.safe_load(result.stdout)
    assert parsed["asyncapi"] == "3.0.0"
    assert _errors(validator, parsed) == []
    assert yaml.safe_load(asyncapi_yaml(SETTINGS)) == deployed_asyncapi_document(SETTINGS)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.__setitem__("asyncapi", "2.6.0"),
        lambda d: d["info"].pop("title"),
        lambda d: d["servers"]["local"].pop("protocol"),
        lambda d: d["channels"]["wallet"].__setitem__("address", 42),
        lambda d: d["channels"]["wallet"]["bindings"]["kafka"].__setitem__("partitions", 0),
        lambda d: d["operations"]["consumeWallet"].__setitem__("action", "consume"),
        lambda d: d["components"]["messages"]["WalletOpened.v1"].__setitem__("payload", "not a schema"),
        lambda d: d.__setitem__("unknownTopLevel", True),
    ],
)
def test_a_broken_document_fails(validator: jsonschema.protocols.Validator, document: dict[str, Any],
                                 breakage: Any) -> None:
    broken = copy.deepcopy(document)
    breakage(broken)
    assert _errors(validator, broken)


def test_every_event_schema_version_is_a_message_on_its_topic(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    for model in REGISTRY.event_models(latest_only=False):
        message_id = f"{model.schema_name}.v{model.schema_version}"
        message = messages[message_id]
        assert message["headers"]["properties"]["event_type"]["const"] == model.event_type
        assert message["headers"]["properties"]["schema_version"]["const"] == str(model.schema_version)
        channel = document["channels"][model.aggregate]
        assert channel["address"] == f"bazaar.{model.aggregate}"
        assert message_id in channel["messages"]
        payload = message["payload"]
        assert set(payload["properties"]) == set(model.model_fields)
        assert "$id" not in payload  # a $id would rebase the document's refs


def test_every_ref_resolves_inside_the_document(document: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/")
        node: Any = document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]


def test_payload_schemas_accept_published_messages(document: dict[str, Any]) -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from commands.messages import to_message
    from domain.money import Money
    from domain.wallet import Wallet

    wallet = Wallet.open(owner_id=uuid4(), currency="EUR", now=datetime.now(UTC))
    wallet.deposit(amount=Money(500, "EUR"), reference="psp-1", now=datetime.now(UTC))
    for nid, event in enumerate(wallet.collect_events(), start=1):
        message = to_message(event, nid)
        headers = {key: value.decode() for key, value in message.headers}
        spec = document["components"]["messages"][f"{headers['schema_name']}.v{headers['schema_version']}"]
        jsonschema.validate(json.loads(message.value), spec["payload"])
        jsonschema.validate(headers, spec["headers"])
        assert message.topic == document["channels"]["wallet"]["address"]


def test_topics_lists_every_catalogue_topic_with_event_types() -> None:
    rows, _ = topic_rows(SETTINGS, live=False)
    by_name = {row.spec.name: row for row in rows}
    assert "Wallet.Deposited (v1)" in by_name["bazaar.wallet"].event_types
    assert by_name["bazaar.wallet"].retention == "forever"
    assert by_name["bazaar.activity"].retention == "7 days"
    result = CliRunner().invoke(data_teams_cli(), ["topics", "--offline", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {row["topic"] for row in listed} == set(by_name)


def test_schemas_export_writes_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(data_teams_cli(), ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert "events/WalletDeposited.v1.json" in written
    assert json.loads((tmp_path / "events/WalletDeposited.v1.json").read_text())["x-event-type"] == (
        "Wallet.Deposited"
    )
