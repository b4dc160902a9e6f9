"""schemathesis against the app's own OpenAPI: no 5xx and no response that breaks the schema."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis.specs.openapi.checks import positive_data_acceptance

from persguard_core.spec import Knowledge
from tests.api.api_testkit import ApiEnv, image_bytes, make_subject, protect, upload

ADMIN = "alpha:admin"


def _seeded_env(make_env: Callable[..., ApiEnv], backend: str) -> ApiEnv:
    """An app holding one subject and one queued job, so that some generated ids can hit real rows."""
    env = make_env(backend)
    protect(env, [make_subject(env)["id"]])
    return env


@pytest.fixture
def fuzz_env(make_env: Callable[..., ApiEnv]) -> ApiEnv:
    return _seeded_env(make_env, "sqlite")


def _operations(env: ApiEnv) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", env.client.app)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_operation_answers_within_its_schema(make_env: Callable[..., ApiEnv], backend: str) -> None:
    """Generated requests (as an admin) for every operation: no 5xx, status codes, bodies and headers as declared.
    On Postgres too, which refuses some text SQLite stores (a NUL character).

    Not checked here: that every schema-valid request is accepted (see
    test_schema_valid_requests_are_refused_only_for_what_a_schema_cannot_state below).
    """
    fuzz_env = _seeded_env(make_env, backend)
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


def _openapi(env: ApiEnv) -> dict:
    return env.client.get("/openapi.json").json()


def test_a_405_names_in_allow_every_method_the_openapi_documents_for_the_path(fuzz_env: ApiEnv) -> None:
    """`/v1/models` is served by two routes (GET, POST); a 405 must name both, not only the first route's."""
    for path, operations in _openapi(fuzz_env)["paths"].items():
        documented = {method.upper() for method in operations}
        url = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)
        response = fuzz_env.client.request("OPTIONS", url, headers=fuzz_env.auth(ADMIN))
        assert response.status_code == 405, (path, response.status_code)
        assert set(response.headers["allow"].split(", ")) == documented, (path, response.headers["allow"])
        assert response.json()["detail"].startswith(f"OPTIONS is not allowed on {url}")


def test_the_subject_image_count_in_the_openapi_is_the_configured_one_and_enforced(
    make_env: Callable[..., ApiEnv],
) -> None:
    env = make_env("sqlite", min_images_per_subject=2, max_images_per_subject=4)
    body = _openapi(env)["paths"]["/v1/subjects"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    schema = _openapi(env)["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    images = schema["properties"]["images"]
    assert "images" in schema["required"]
    assert (images["type"], images["minItems"], images["maxItems"], images["uniqueItems"]) == ("array", 2, 4, True)
    for count, status in ((1, 422), (2, 201), (4, 201), (5, 422)):
        files = upload([image_bytes(1000 * count + i) for i in range(count)])
        response = env.client.post("/v1/subjects", headers=env.auth("alpha:rights_holder"), **files)
        assert response.status_code == status, (count, response.text)


TEMPLATE_TOKENS = ["{", "}", "{{", "}}", "identifier", "class_noun", ":", "!r", "0", ".x", "[0]", "a", " ", "\n"]
IDENTIFIER_CHARACTERS = ["a", "Z", "7", "-", "{", "}", " ", "\t", "\n", "\x1c", "\x85", "\u3000", "é", "\u200b"]


def _knowledge_item_validator(env: ApiEnv, field: str):
    knowledge = _openapi(env)["components"]["schemas"]["AdvancedSettings"]["properties"]["knowledge"]
    (schema,) = [option for option in knowledge["anyOf"] if option.get("type") == "object"]
    assert schema["additionalProperties"] is False and set(schema["properties"]) == {"mode", "identifiers", "templates"}
    return jsonschema_rs.validator_for(schema["properties"][field]["items"])


def _core_accepts(**knowledge: list[str]) -> bool:
    try:
        Knowledge(**knowledge)
    except ValidationError:
        return False
    return True


def test_the_knowledge_schema_accepts_exactly_the_templates_and_identifiers_the_core_accepts(fuzz_env: ApiEnv) -> None:
    templates = _knowledge_item_validator(fuzz_env, "templates")
    identifiers = _knowledge_item_validator(fuzz_env, "identifiers")
    for template in ("a photo of {identifier} {class_noun}", "{class_noun}{{x}}{identifier}", "{{identifier}}"):
        assert templates.is_valid(template) == _core_accepts(templates=[template]), template

    @given(st.lists(st.sampled_from(TEMPLATE_TOKENS), max_size=12).map("".join))
    @settings(max_examples=400, deadline=None, database=None, derandomize=True)
    def same_templates(template: str) -> None:
        assert templates.is_valid(template) == _core_accepts(templates=[template]), repr(template)

    @given(st.text(st.sampled_from(IDENTIFIER_CHARACTERS), max_size=34))
    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    def same_identifiers(identifier: str) -> None:
        assert identifiers.is_valid(identifier) == _core_accepts(identifiers=[identifier]), repr(identifier)

    same_templates()
    same_identifiers()


@pytest.mark.parametrize("body", [b'{"name": "\xff\xfe"}', b"[" * 100_000], ids=["not-utf8", "too-deep"])
@pytest.mark.parametrize("path", ["/v1/models", "/v1/protections"])
def test_a_json_body_the_parser_refuses_is_a_documented_422(fuzz_env: ApiEnv, path: str, body: bytes) -> None:
    headers = {**fuzz_env.auth(ADMIN), "Content-Type": "application/json"}
    response = fuzz_env.client.post(path, content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/validation-error")
    assert response.json()["detail"].startswith("the request body is not valid JSON (")
    assert "422" in _openapi(fuzz_env)["paths"][path]["post"]["responses"]


def test_a_multipart_body_the_parser_refuses_is_a_documented_400(fuzz_env: ApiEnv) -> None:
    headers = {**fuzz_env.auth("alpha:rights_holder"), "Content-Type": "multipart/form-data; boundary=x"}
    part = b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n"  # a part without a name
    response = fuzz_env.client.post("/v1/subjects", content=part, headers=headers)
    assert response.status_code == 400 and response.json()["type"].endswith("/bad-request"), response.text
    assert "400" in _openapi(fuzz_env)["paths"]["/v1/subjects"]["post"]["responses"]


# What a schema cannot state, and so the only reasons a schema-valid request may be refused (422): ids that do not
# exist, rules across fields (each subject once, one tenant), the internal training settings an admin may set (their
# fields are deliberately not published), and that an upload is a real picture.
REFUSALS_BEYOND_THE_SCHEMA = re.compile(
    r"unknown subject ids: |unknown base model |each subject may appear once|must belong to one tenant"
    r"|the protection cannot be built: advanced\.(losses|training|encoder)\b|no checkpoint "
    r"|is not a PNG, JPEG or WebP image"
)


@pytest.mark.parametrize(
    ("operation_label", "who"),
    [("POST /v1/protections", ADMIN), ("POST /v1/subjects", "alpha:rights_holder"), ("POST /v1/models", ADMIN)],
)
def test_schema_valid_requests_are_refused_only_for_what_a_schema_cannot_state(
    fuzz_env: ApiEnv, operation_label: str, who: str
) -> None:
    """Generated requests (positive data) whose subject ids are real ones: every 422 is one the schema cannot
    express. The template and image-count rules used to be such refusals before the schema stated them."""
    subjects = [make_subject(fuzz_env, seed=seed, name=f"s{seed}")["id"] for seed in range(1, 4)]
    (operation,) = [op for op in _operations(fuzz_env) if op.label == operation_label]
    statuses: list[int] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def check(case) -> None:
        if operation_label == "POST /v1/protections":
            case.body["subjects"] = [
                {**item, "subject_id": subject} for item, subject in zip(case.body["subjects"], subjects, strict=False)
            ]
            case.body["base_model"] = "builtin"
        response = case.call(headers=fuzz_env.auth(who))
        assert response.status_code < 500, response.text
        if response.status_code == 422:
            detail = response.json()["detail"]
            assert REFUSALS_BEYOND_THE_SCHEMA.search(detail), f"schema-valid body refused: {detail}"
        statuses.append(response.status_code)

    check()
    if operation_label != "POST /v1/subjects":  # random bytes are never a picture: all of those end at decoding
        assert {202, 201} & set(statuses), statuses


def test_a_behaviour_without_kind_is_the_default_pattern_as_the_schema_says(fuzz_env: ApiEnv) -> None:
    behaviour = _openapi(fuzz_env)["components"]["schemas"]["PatternBehaviourIn"]
    assert behaviour["properties"]["kind"]["default"] == "pattern" and "kind" not in behaviour.get("required", [])
    subject = make_subject(fuzz_env, seed=7)["id"]
    body = {"subjects": [{"subject_id": subject, "behaviour": {"position": "top-left"}}]}
    response = fuzz_env.client.post("/v1/protections", headers=fuzz_env.auth("alpha:rights_holder"), json=body)
    assert response.status_code == 202, response.text
    assert response.json()["spec"]["subjects"][0]["behaviour"]["kind"] == "pattern"
    assert response.json()["spec"]["subjects"][0]["behaviour"]["position"] == "top-left"


def test_free_text_with_a_nul_character_is_a_documented_422_on_postgres(api_pg: ApiEnv) -> None:
    """Postgres text cannot hold U+0000: such text used to reach a query and answer 500."""
    subject = make_subject(api_pg)["id"]
    admin, nul = api_pg.auth(ADMIN), "a\x00b"
    files = upload([image_bytes(900 + i) for i in range(3)], name=nul)
    target = {"kind": "target", "target_prompt": nul}
    requests = {
        "subject name": lambda: api_pg.client.post("/v1/subjects", headers=api_pg.auth("alpha:rights_holder"), **files),
        "model source": lambda: api_pg.client.post("/v1/models", headers=admin, json={"name": "m", "source": nul}),
        "model description": lambda: api_pg.client.post(
            "/v1/models", headers=admin, json={"name": "m", "source": "s", "description": nul}
        ),
        "base model": lambda: protect(api_pg, [subject], who=ADMIN, base_model=nul),
        "target prompt": lambda: api_pg.client.post(
            "/v1/protections", headers=admin, json={"subjects": [{"subject_id": subject, "behaviour": target}]}
        ),
        "job filter": lambda: api_pg.client.get("/v1/jobs", headers=admin, params={"model": nul}),
    }
    for what, request in requests.items():
        response = request()
        assert response.status_code == 422 and response.json()["type"].endswith("/validation-error"), what
    text = json.dumps(_openapi(api_pg))
    assert text.count('"pattern": "^[^\\\\x00]*$"') >= 6
