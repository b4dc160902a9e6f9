"""schemathesis against the app's own OpenAPI: no 5xx and no response that breaks the schema."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.api_testkit import ApiEnv, make_subject, protect

ADMIN = "alpha:admin"


@pytest.fixture
def fuzz_env(make_env: Callable[..., ApiEnv]) -> ApiEnv:
    """An app holding one subject and one queued job, so that some generated ids can hit real rows."""
    env = make_env("sqlite")
    protect(env, [make_subject(env)["id"]])
    return env


def _operations(env: ApiEnv) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", env.client.app)
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_answers_within_its_schema(fuzz_env: ApiEnv) -> None:
    """Generated requests (as an admin) for every operation: no 5xx, status codes, bodies and headers as declared.

    Not checked: that every schema-valid request is accepted. A schema cannot say "a real PNG", so random
    bytes in `images` are rightly refused; those refusals are tested in test_upload_validation.py.
    """
    operations = _operations(fuzz_env)
    assert len(operations) >= 14
    calls: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def check(case) -> None:
            case.call_and_validate(headers=fuzz_env.auth(ADMIN), excluded_checks=[positive_data_acceptance])
            calls.append(case.operation.label)

        check()
    assert len(set(calls)) == len(operations) and len(calls) > 5 * len(operations)
