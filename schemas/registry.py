"""Schema registry: (name, version) -> model, the latest version of each name, and upcasters.

An upcaster turns the dict of an event (or command) at version n into the dict at version n+1;
`upcast` chains them up to the latest version and `parse` validates the result with the latest model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from schemas import licence, listing, order, trust, user, wallet
from schemas.base import CommandSchema, EventSchema

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class SchemaNotFoundError(LookupError):
    """No schema is registered under that name (and version)."""


class SchemaRegistry:
    """Models by (schema_name, schema_version), with upcasters between consecutive versions."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], type[BaseModel]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        # latest_for_event_type runs once per published event: remember its answers until a register.
        self._latest_by_event_type: dict[str, type[EventSchema]] = {}

    def register(self, model: type[BaseModel]) -> None:
        """Add a model under its `schema_name` and `schema_version` class vars."""
        key = (_name(model), _version(model))
        if key in self._models and self._models[key] is not model:
            raise ValueError(f"schema {key} registered twice")
        self._models[key] = model
        self._latest_by_event_type.clear()

    def register_upcaster(self, name: str, from_version: int, upcaster: Upcaster) -> None:
        """Add the step that turns version `from_version` of `name` into `from_version + 1`."""
        self._upcasters[(name, from_version)] = upcaster

    def get(self, name: str, version: int) -> type[BaseModel]:
        """The model of one version of a schema."""
        try:
            return self._models[(name, version)]
        except KeyError:
            raise SchemaNotFoundError(f"no schema {name} v{version}") from None

    def latest_version(self, name: str) -> int:
        """The highest registered version of a schema."""
        versions = self.versions(name)
        if not versions:
            raise SchemaNotFoundError(f"no schema {name}")
        return versions[-1]

    def latest(self, name: str) -> type[BaseModel]:
        """The model of the latest version of a schema."""
        return self.get(name, self.latest_version(name))

    def versions(self, name: str) -> list[int]:
        """Registered versions of a schema, ascending."""
        return sorted(v for (n, v) in self._models if n == name)

    def names(self) -> list[str]:
        """All schema names, sorted."""
        return sorted({n for (n, _) in self._models})

    def models(self) -> list[type[BaseModel]]:
        """Every registered model (all versions), sorted by name then version."""
        return [self._models[key] for key in sorted(self._models)]

    def upcast(self, name: str, version: int, data: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Bring `data` from `version` to the latest version; returns (latest version, new dict)."""
        target = self.latest_version(name)
        if version > target:
            raise SchemaNotFoundError(f"{name} v{version} is newer than this registry (v{target})")
        result = dict(data)
        for step in range(version, target):
            try:
                result = self._upcasters[(name, step)](result)
            except KeyError:
                raise SchemaNotFoundError(f"no upcaster for {name} v{step} -> v{step + 1}") from None
        return target, result

    def parse(self, name: str, version: int, data: Mapping[str, Any]) -> BaseModel:
        """Upcast `data` and validate it with the latest model."""
        target, upcast = self.upcast(name, version, data)
        return self.get(name, target).model_validate(upcast)

    def latest_for_event_type(self, event_type: str) -> type[EventSchema]:
        """The latest event schema for a domain event type name such as "Listing.Drafted"."""
        cached = self._latest_by_event_type.get(event_type)
        if cached is not None:
            return cached
        for model in reversed(self.models()):
            if issubclass(model, EventSchema) and model.event_type == event_type:
                latest = self._latest_by_event_type[event_type] = self.latest_event(model.schema_name)
                return latest
        raise SchemaNotFoundError(f"no event schema for {event_type}")

    def latest_event(self, name: str) -> type[EventSchema]:
        """The latest version of an event schema."""
        model = self.latest(name)
        if not issubclass(model, EventSchema):
            raise SchemaNotFoundError(f"{name} is not an event schema")
        return model

    def event_models(self, *, latest_only: bool = True) -> list[type[EventSchema]]:
        """Event schemas (by default only the latest version of each)."""
        models = [m for m in self.models() if issubclass(m, EventSchema)]
        return [m for m in models if not latest_only or _version(m) == self.latest_version(_name(m))]

    def command_models(self, *, latest_only: bool = True) -> list[type[CommandSchema]]:
        """Command schemas (by default only the latest version of each)."""
        models = [m for m in self.models() if issubclass(m, CommandSchema)]
        return [m for m in models if not latest_only or _version(m) == self.latest_version(_name(m))]


def _name(model: type[BaseModel]) -> str:
    name = getattr(model, "schema_name", None)
    if not isinstance(name, str):
        raise TypeError(f"{model.__name__} has no schema_name")
    return name


def _version(model: type[BaseModel]) -> int:
    version = getattr(model, "schema_version", None)
    if not isinstance(version, int):
        raise TypeError(f"{model.__name__} has no schema_version")
    return version


def listing_drafted_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """ListingDrafted v1 had no attributes: v2 starts them empty."""
    return {**data, "attributes": data.get("attributes", {})}


def build_registry(models: Iterable[type[BaseModel]] = ()) -> SchemaRegistry:
    """A registry of every Bazaar event and command schema, with its upcasters (plus `models`)."""
    registry = SchemaRegistry()
    for module in (listing, order, wallet, licence, trust, user):
        for model in (*module.EVENTS, *module.COMMANDS):
            registry.register(model)
    for model in models:
        registry.register(model)
    registry.register_upcaster("ListingDrafted", 1, listing_drafted_v1_to_v2)
    return registry


REGISTRY = build_registry()
"""The default registry."""


def get(name: str, version: int) -> type[BaseModel]:
    """The model of one version of a schema (default registry)."""
    return REGISTRY.get(name, version)


def latest(name: str) -> type[BaseModel]:
    """The latest model of a schema (default registry)."""
    return REGISTRY.latest(name)


def upcast(name: str, version: int, data: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """Bring data up to the latest version (default registry)."""
    return REGISTRY.upcast(name, version, data)


def parse(name: str, version: int, data: Mapping[str, Any]) -> BaseModel:
    """Upcast and validate with the latest model (default registry)."""
    return REGISTRY.parse(name, version, data)
