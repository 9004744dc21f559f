"""Schemathesis, every check on, against the command API served on the real store: its OpenAPI document is true.

Every answer must be a status the route declares, with a body of the declared schema; no 5xx. Bounded: a few
positive and negative examples per route (the point is the contract, not load).
"""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.schemas import APIOperation

from tests.integration.test_command_api import User, admin  # noqa: F401 (fixture)

EXAMPLES = 6


def _failures_of(operation: APIOperation, mode: GenerationMode, headers: dict[str, str]) -> list[str]:
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Case) -> None:
        try:
            case.call_and_validate(headers=headers)
        except Exception as failure:  # schemathesis' FailureGroup: keep going, report every route at the end
            failures.append(f"{operation.label} [{mode.value}]: {failure}")
            raise

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # a route with no input has no malformed request (GET /health)
    except Exception as error:  # hypothesis re-raises the shrunk failure (already in `failures`), or could not run
        if not failures:
            failures.append(f"{operation.label} [{mode.value}]: {error!r}")
    return failures


def test_every_answer_is_declared_with_its_body_and_no_5xx(api: httpx.Client, admin: User) -> None:  # noqa: F811
    root = str(api.base_url).removesuffix("/").removesuffix("/v1")
    schema = schemathesis.openapi.from_url(f"{root}/openapi.json").exclude(path_regex="^/v1/audit/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25

    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for failure in _failures_of(operation, mode, admin.headers)
    ]

    assert failures == []
