"""Schemas match the domain events exactly; registry, upcasters, export and command validation."""

from __future__ import annotations

import dataclasses
from uuid import UUID

import pytest
from pydantic import ValidationError

from domain.chain import ChainedAggregate
from domain.licence import Licence
from domain.listing import Listing
from domain.order import Order
from domain.trust import TrustScore
from domain.user import User
from domain.wallet import Wallet
from schemas.base import CommandSchema, EventSchema
from schemas.export import export_json_schemas
from schemas.licence import IssueLicence, RenewLicence
from schemas.listing import DraftListing, ListingDrafted, ListingDraftedV1, ReviseListing
from schemas.registry import REGISTRY, SchemaNotFoundError, latest, parse, upcast
from schemas.trust import RecordTrustSignal
from schemas.user import RegisterUser

AGGREGATES: tuple[type[ChainedAggregate], ...] = (Listing, Order, Wallet, Licence, TrustScore, User)
STORE_ENVELOPE = {"originator_id", "originator_version", "timestamp"}
SCHEMA_ENVELOPE = {"aggregate_id", "version", "timestamp"}


def _domain_events() -> list[type]:
    return [
        value
        for agg in AGGREGATES
        for name, value in vars(agg).items()
        if isinstance(value, type)
        and issubclass(value, ChainedAggregate.Event)
        and name not in ("Event", "Created")
    ]


def test_every_domain_event_has_a_schema_with_the_same_fields() -> None:
    events = _domain_events()
    assert len(events) == 41  # + Listing.AutoBoostEnabled, Listing.AutoBoostDisabled
    for event_cls in events:
        schema = REGISTRY.latest_for_event_type(event_cls.__qualname__)
        body = {f.name for f in dataclasses.fields(event_cls)} - STORE_ENVELOPE
        assert set(schema.model_fields) - SCHEMA_ENVELOPE == body, event_cls.__qualname__


def test_every_event_schema_belongs_to_a_domain_event() -> None:
    types = {e.__qualname__ for e in _domain_events()}
    assert {m.event_type for m in REGISTRY.event_models(latest_only=False)} == types


def test_schema_names_are_unique_per_version_and_commands_imperative() -> None:
    for model in REGISTRY.command_models():
        assert issubclass(model, CommandSchema) and not model.schema_name.endswith("ed")
    for model in REGISTRY.event_models():
        assert issubclass(model, EventSchema)


def test_listing_drafted_v1_upcasts_to_v2() -> None:
    v1 = {
        "aggregate_id": str(UUID(int=1)),
        "version": 1,
        "timestamp": "2024-05-01T12:00:00Z",
        "prev_hash": "0" * 64,
        "originator_topic": "domain.listing:Listing",
        "seller_id": str(UUID(int=2)),
        "kind": "goods",
        "title": "Lamp",
        "description": "",
        "category": "home",
        "price_amount": 100,
        "currency": "EUR",
        "creator_id": None,
        "royalty_bps": 0,
    }
    ListingDraftedV1.model_validate(v1)
    with pytest.raises(ValidationError):
        ListingDrafted.model_validate(v1)
    assert upcast("ListingDrafted", 1, v1) == (2, {**v1, "attributes": {}})
    parsed = parse("ListingDrafted", 1, v1)
    assert isinstance(parsed, ListingDrafted) and parsed.attributes == {}
    assert latest("ListingDrafted") is ListingDrafted
    assert REGISTRY.versions("ListingDrafted") == [1, 2]


def test_registry_lookups_fail_clearly() -> None:
    with pytest.raises(SchemaNotFoundError):
        latest("NoSuchThing")
    with pytest.raises(SchemaNotFoundError):
        REGISTRY.get("PlaceOrder", 9)
    with pytest.raises(SchemaNotFoundError):
        upcast("ListingDrafted", 3, {})


def test_export_gives_every_schema_version_as_json() -> None:
    files = export_json_schemas()
    assert "events/ListingDrafted.v1.json" in files and "events/ListingDrafted.v2.json" in files
    assert "commands/PlaceOrder.v1.json" in files
    assert len(files) == len(REGISTRY.models())
    assert files["events/OrderPlaced.v1.json"]["x-topic"] == "bazaar.order"


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (
            DraftListing,
            {"kind": "goods", "title": "Lamp", "category": "home", "price": {"amount": 5, "currency": "eur"}},
            "3-letter upper-case ISO 4217",
        ),
        (
            DraftListing,
            {
                "kind": "goods",
                "title": "Lamp",
                "category": "home",
                "price": {"amount": -5, "currency": "EUR"},
            },
            "greater than or equal to 1",
        ),
        (
            DraftListing,
            {
                "kind": "goods",
                "title": "Lamp",
                "category": "home",
                "royalty_bps": 20_000,
                "price": {"amount": 5, "currency": "EUR"},
            },
            "less than or equal to 10000",
        ),
        (
            DraftListing,
            {
                "kind": "goods",
                "title": "Lamp",
                "category": "home",
                "royalty_bps": 100,
                "price": {"amount": 5, "currency": "EUR"},
            },
            "needs a creator_id",
        ),
        (
            DraftListing,
            {
                "kind": "goods",
                "title": "Lamp",
                "category": "home",
                "seller_id": str(UUID(int=1)),
                "price": {"amount": 5, "currency": "EUR"},
            },
            "Extra inputs are not permitted",
        ),
        (ReviseListing, {"listing_id": str(UUID(int=1))}, "at least one"),
        (
            IssueLicence,
            {"listing_id": str(UUID(int=1)), "licensee_id": str(UUID(int=2)), "kind": "usage_metered"},
            "usage_metered needs quota",
        ),
        (RenewLicence, {"licence_id": str(UUID(int=1))}, "exactly one"),
        (
            RecordTrustSignal,
            {"user_id": str(UUID(int=1)), "kind": "review", "ref": "r", "at": "2024-05-01T12:00:00Z"},
            "stars are given for reviews",
        ),
        (
            RegisterUser,
            {"email": "not-an-email", "password": "x" * 12, "display_name": "Ann"},
            "String should match pattern",
        ),
        (RegisterUser, {"email": "a@b.io", "password": "short", "display_name": "Ann"}, "at least 12"),
        (
            RegisterUser,
            {"email": "a@b.io", "password": "x" * 12, "display_name": "Ann", "role": "admin"},
            "Input should be 'seller' or 'buyer'",
        ),
    ],
)
def test_command_validation_messages(
    model: type[CommandSchema], data: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert message in str(info.value)


def test_valid_commands_parse() -> None:
    draft = DraftListing.model_validate(
        {
            "kind": "ai_model",
            "title": "  Tiny LM  ",
            "category": "nlp",
            "price": {"amount": 999, "currency": "USD"},
            "attributes": {"params": 1_000_000, "tags": ["lm"]},
        }
    )
    assert draft.title == "Tiny LM" and draft.price.amount == 999
    user = RegisterUser.model_validate(
        {"email": " Ann@Example.COM ", "password": "x" * 12, "display_name": "A"}
    )
    assert user.email == "ann@example.com" and user.role == "buyer"
