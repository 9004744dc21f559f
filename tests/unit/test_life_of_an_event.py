"""docs/ARCHITECTURE.md's "life of an event" table is the one the registry and the read routes give.

Which projections a read route waits on is read from read_api/routes.py itself (its `read.catch_up(...)`
calls), and everything else from projections/registry.py: neither is restated here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

from projections.registry import PROJECTIONS, life_of_an_event, projection_names
from read_api import routes
from read_api.search import Mode, projections_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"
MARKERS = re.compile(r"<!-- life-of-an-event:start -->\n(.*?)<!-- life-of-an-event:end -->", re.S)


def waits_of_routes() -> dict[str, set[str]]:
    """`GET /v1/<path>` -> the projections the route waits on for `?after=`."""
    tree = ast.parse(Path(routes.__file__).read_text())
    found: dict[str, set[str]] = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for decorator in fn.decorator_list:
            if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "get" and isinstance(decorator.args[0], ast.Constant)):
                found[f"GET /v1{decorator.args[0].value}"] = _waited_on(fn)
    return found


def _waited_on(fn: ast.FunctionDef) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "catch_up":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
                elif isinstance(arg, ast.Starred) and ast.unparse(arg.value).startswith("projections_for("):
                    names.update(name for mode in get_args(Mode) for name in projections_for(mode))
                else:
                    raise AssertionError(f"{fn.name}: cannot read which projections {ast.unparse(arg)} names")
    return names


def routes_by_projection() -> dict[str, tuple[str, ...]]:
    waits = waits_of_routes()
    return {name: tuple(sorted(route for route, names in waits.items() if name in names))
            for name in projection_names()}


def test_every_route_waits_on_known_projections_and_every_projection_serves_a_route() -> None:
    waited = set().union(*waits_of_routes().values())
    assert waited == set(projection_names())


def test_topics_are_derived_from_the_handlers() -> None:
    for cls in PROJECTIONS:
        assert set(cls.topics("x.")) == {f"x.{event.aggregate}" for event in cls.handlers}, cls.name


def test_the_architecture_doc_shows_the_generated_table() -> None:
    match = MARKERS.search(DOC.read_text())
    assert match, "docs/ARCHITECTURE.md lacks the life-of-an-event markers"
    generated = life_of_an_event(routes_by_projection())
    assert match.group(1) == generated, "regenerate the table in docs/ARCHITECTURE.md:\n" + generated
