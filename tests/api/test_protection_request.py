"""The public protection request: profiles and the spec they build, the admin-only override, the OpenAPI text,
and the domain errors of the services as HTTP problems."""

from __future__ import annotations

import ast
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any, get_args

import pytest

from api.errors import domain_status
from api.schemas.jobs import ProfileName, ProtectionCreate
from api.services import errors
from api.services.jobs import build_spec
from api.services.profiles import PROFILES
from common.models import BaseModelEntry, ProtectionJob, Subject, SubjectImage
from common.storage import StorageError
from persguard_core.spec import (
    DEFAULT_CARRIER,
    ENCODER_STEPS_PER_SUBJECT,
    EncoderTraining,
    ErasureBehaviour,
    Knowledge,
    LossWeights,
    PatternBehaviour,
    ProtectionSpec,
    SubjectSpec,
    TargetBehaviour,
    Training,
)
from tests.api.api_testkit import ApiEnv, image_bytes, make_subject, protect, upload

RH, ADMIN = "alpha:rights_holder", "alpha:admin"
SERVICES = Path(__file__).resolve().parents[2] / "api" / "services"


def _subjects(n: int) -> list[Subject]:
    return [
        Subject(
            id=uuid.uuid4(),
            class_noun="dog",
            images=[SubjectImage(storage_key=f"subjects/{i}/{p:02d}.png") for p in range(3)],
        )
        for i in range(n)
    ]


def _build(subjects: list[Subject], **fields: Any) -> ProtectionSpec:
    body = ProtectionCreate.model_validate({"subjects": [{"subject_id": str(s.id)} for s in subjects], **fields})
    return build_spec(body, subjects, BaseModelEntry(name="builtin", source="builtin"))


@pytest.mark.parametrize("n", [1, 3])
def test_the_default_request_builds_the_spec_of_the_core_defaults(n: int) -> None:
    subjects = _subjects(n)
    expected = ProtectionSpec(
        base_model="builtin",
        subjects=[
            SubjectSpec(
                name=str(s.id),
                class_noun="dog",
                images=[i.storage_key for i in s.images],
                behaviour=PatternBehaviour(),
            )
            for s in subjects
        ],
        knowledge=Knowledge(),
        losses=LossWeights(),
        training=Training(),
        carrier=DEFAULT_CARRIER,
        encoder=EncoderTraining(),
    )
    built = _build(subjects)
    assert built.model_dump(mode="json") == expected.model_dump(mode="json")
    assert _build(subjects, profile="default").model_dump(mode="json") == expected.model_dump(mode="json")
    assert built.total_steps == ENCODER_STEPS_PER_SUBJECT * n


@pytest.mark.parametrize(
    ("profile", "unet_steps", "encoder_per_subject"),
    [("fast", 100, 100), ("default", 300, None), ("thorough", 600, 600)],
)
def test_each_profile_sets_the_step_budgets_and_keeps_the_other_settings(
    profile: str, unet_steps: int, encoder_per_subject: int | None
) -> None:
    assert set(PROFILES) == set(get_args(ProfileName))
    for n in (1, 2):
        spec = _build(_subjects(n), profile=profile)
        assert spec.training == Training(steps=unet_steps)
        encoder_steps = encoder_per_subject * n if encoder_per_subject else None
        assert spec.encoder == EncoderTraining(steps=encoder_steps)
        assert (spec.losses, spec.knowledge, spec.carrier) == (LossWeights(), Knowledge(), DEFAULT_CARRIER)
        assert spec.total_steps == (encoder_per_subject or ENCODER_STEPS_PER_SUBJECT) * n
        assert _build(_subjects(n), profile=profile, carrier="unet").total_steps == unet_steps


def test_steps_override_the_profiles_budget_per_subject_for_the_encoder() -> None:
    spec = _build(_subjects(2), profile="thorough", steps=50)
    assert (spec.training.steps, spec.encoder.steps, spec.total_steps) == (50, 100, 100)
    both = _build(_subjects(2), steps=50, carrier="unet+encoder")
    assert both.total_steps == 50 + 100


def test_advanced_fields_are_set_over_the_profile_and_named_when_invalid() -> None:
    advanced = {
        "training": {"checkpoint_every": 7, "unroll": "full"},
        "encoder": {"steps": 3, "batch_size": 2},
        "losses": {"prior": 2.0},
        "knowledge": {"mode": "gray-box"},
    }
    spec = _build(_subjects(1), profile="fast", steps=40, advanced=advanced)
    assert spec.training == Training(steps=40, checkpoint_every=7, unroll="full")
    assert spec.encoder == EncoderTraining(steps=3, batch_size=2)
    assert (spec.losses, spec.knowledge) == (LossWeights(prior=2.0), Knowledge(mode="gray-box"))
    with pytest.raises(errors.InvalidRequest, match=r"advanced\.training\.unroll: Input should be"):
        _build(_subjects(1), advanced={"training": {"unroll": "sideways"}})
    with pytest.raises(errors.InvalidRequest, match=r"advanced\.encoder\.colour: Extra inputs are not permitted"):
        _build(_subjects(1), advanced={"encoder": {"colour": "red"}})


def test_behaviours_become_the_cores() -> None:
    behaviours = [
        {"kind": "pattern", "position": "top-left", "opacity": 0.5},
        {"kind": "erasure", "background_prompt": "a photo of a beach"},
        {"kind": "target", "target_prompt": "a photo of a star"},
    ]
    subjects = _subjects(3)
    body = ProtectionCreate.model_validate(
        {"subjects": [{"subject_id": str(s.id), "behaviour": b} for s, b in zip(subjects, behaviours, strict=True)]}
    )
    spec = build_spec(body, subjects, BaseModelEntry(name="builtin", source="builtin"))
    assert [s.behaviour for s in spec.subjects] == [
        PatternBehaviour(position="top-left", opacity=0.5),
        ErasureBehaviour(background_prompt="a photo of a beach"),
        TargetBehaviour(target_prompt="a photo of a star"),
    ]


def test_openapi_shows_no_history_and_none_of_the_cores_research_fields(api: ApiEnv) -> None:
    text = json.dumps(api.client.get("/openapi.json").json())
    assert not re.search(r"\b(run|runs|session|stage) \d", text, re.IGNORECASE)
    assert not re.search(r"#\d|RESEARCH\.md|RESULTS\.md", text)
    for field in ("unroll", "activation_only", "behaviour_x0_weight_max", "inner_steps", "target_gain"):
        assert field not in text
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    assert not {"Training", "EncoderTraining", "LossWeights", "Knowledge", "PatternBehaviour"} & set(schemas)


def test_a_rights_holder_sending_advanced_settings_is_refused(api: ApiEnv) -> None:
    subject = make_subject(api)
    for advanced in ({"training": {"checkpoint_every": 5}}, {}):
        response = protect(api, [subject["id"]], advanced=advanced)
        assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/forbidden") and problem["title"] == "Forbidden"
        assert problem["detail"].startswith("`advanced` is accepted from admin keys only")
    assert api.count(ProtectionJob) == 0
    admin = protect(api, [subject["id"]], who=ADMIN, advanced={"training": {"checkpoint_every": 5}})
    assert admin.status_code == 202 and admin.json()["spec"]["training"]["checkpoint_every"] == 5
    assert admin.json()["tenant_id"] == subject["tenant_id"]


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"training": {"steps": 10}}, "body.training: Extra inputs are not permitted"),
        ({"encoder": {"steps": 10}}, "body.encoder: Extra inputs are not permitted"),
        ({"losses": {"prior": 2}}, "body.losses: Extra inputs are not permitted"),
        ({"steps": 0}, "body.steps: Input should be greater than or equal to 1"),
        ({"steps": 3001}, "body.steps: Input should be less than or equal to 3000"),
        ({"profile": "turbo"}, "body.profile: Input should be 'fast', 'default' or 'thorough'"),
        ({"advanced": {"carrier": "unet"}}, "body.advanced.carrier: Extra inputs are not permitted"),
    ],
)
def test_unknown_and_out_of_range_fields_are_422_naming_the_field(api_pg: ApiEnv, extra: dict, where: str) -> None:
    subject = make_subject(api_pg)
    response = protect(api_pg, [subject["id"]], who=ADMIN, **extra)
    assert response.status_code == 422 and where in response.json()["detail"], response.text
    assert api_pg.count(ProtectionJob) == 0


def test_behaviour_fields_the_api_does_not_take_are_422_naming_the_field(api_pg: ApiEnv) -> None:
    subject = make_subject(api_pg)
    body = {"subjects": [{"subject_id": subject["id"], "behaviour": {"kind": "pattern", "pattern_image": "x.png"}}]}
    response = api_pg.client.post("/v1/protections", headers=api_pg.auth(RH), json=body)
    assert response.status_code == 422
    assert "body.subjects.0.behaviour.pattern.pattern_image: Extra inputs" in response.json()["detail"]


def test_an_admins_invalid_advanced_field_is_422_naming_it(api_pg: ApiEnv) -> None:
    subject = make_subject(api_pg)
    response = protect(api_pg, [subject["id"]], who=ADMIN, advanced={"training": {"unroll": "sideways"}})
    assert response.status_code == 422 and response.json()["type"].endswith("/validation-error")
    assert response.json()["detail"].startswith("the protection cannot be built: advanced.training.unroll: ")


@pytest.mark.parametrize(
    ("knowledge", "where", "why"),
    [
        (
            {"templates": ["{identifier} {class_noun} {identifier:>2000000000}"]},
            "advanced.knowledge.templates",
            "has a format spec in {identifier:>2000000000}",
        ),
        ({"templates": ["a {identifier!r} {class_noun}"]}, "advanced.knowledge.templates", "has a conversion"),
        ({"templates": ["a {0} {identifier} {class_noun}"]}, "advanced.knowledge.templates", "has the field '0'"),
        ({"identifiers": ["a b"]}, "advanced.knowledge.identifiers", "without braces or whitespace"),
        ({"identifiers": ["x" * 33]}, "advanced.knowledge.identifiers.0", "at most 32 characters"),
        ({"identifiers": [f"v{i}" for i in range(17)]}, "advanced.knowledge.identifiers", "at most 16 items"),
        ({"templates": ["{identifier} {class_noun}" + "x" * 200]}, "advanced.knowledge.templates.0", "at most 200"),
    ],
)
def test_an_admins_unsafe_knowledge_is_422_naming_the_field(make_env, knowledge: dict, where: str, why: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=re.escape(where)):
        _build(_subjects(1), advanced={"knowledge": knowledge})
    env = make_env("sqlite")
    response = protect(env, [make_subject(env)["id"]], who=ADMIN, advanced={"knowledge": knowledge})
    assert response.status_code == 422 and response.json()["type"].endswith("/validation-error"), response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"the protection cannot be built: {where}: ") and why in detail, detail
    assert env.count(ProtectionJob) == 0


def test_the_same_request_spelled_with_its_defaults_is_a_replay_and_another_profile_is_not(api_pg: ApiEnv) -> None:
    subject = make_subject(api_pg)
    first = protect(api_pg, [subject["id"]], key="k-1")
    spelled = protect(api_pg, [subject["id"]], key="k-1", profile="default", carrier="encoder", steps=None)
    assert spelled.status_code == 202 and spelled.json()["id"] == first.json()["id"]
    other = protect(api_pg, [subject["id"]], key="k-1", profile="fast")
    assert other.status_code == 409 and other.json()["type"].endswith("/idempotency-conflict")
    assert api_pg.count(ProtectionJob) == 1


def test_each_kind_of_domain_error_has_its_status() -> None:
    assert {
        cls: domain_status(cls("x"))
        for cls in (
            errors.NotFound,
            errors.Conflict,
            errors.IdempotencyConflict,
            errors.InvalidState,
            errors.PermissionDenied,
            errors.InvalidRequest,
            errors.UnknownSubject,
            errors.UnknownModel,
            errors.Unavailable,
            errors.StorageUnavailable,
        )
    } == {
        errors.NotFound: 404,
        errors.Conflict: 409,
        errors.IdempotencyConflict: 409,
        errors.InvalidState: 409,
        errors.PermissionDenied: 403,
        errors.InvalidRequest: 422,
        errors.UnknownSubject: 422,
        errors.UnknownModel: 422,
        errors.Unavailable: 503,
        errors.StorageUnavailable: 503,
    }


def _problem(response: Any) -> tuple[int, str, str]:
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    return body["status"], body["type"].rsplit("/", 1)[-1], body["title"]


def test_domain_errors_answer_the_problems_they_did_before(api: ApiEnv) -> None:
    subject = make_subject(api)
    missing = str(uuid.uuid4())
    job = protect(api, [subject["id"]], key="k-1").json()
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth(RH))
    cases = {
        "unknown job": (api.client.get(f"/v1/jobs/{missing}", headers=api.auth(RH)), (404, "not-found", "Not Found")),
        "unknown job, cancel": (
            api.client.post(f"/v1/jobs/{missing}/cancel", headers=api.auth(RH)),
            (404, "not-found", "Not Found"),
        ),
        "unknown subject": (
            api.client.get(f"/v1/subjects/{missing}", headers=api.auth(RH)),
            (404, "not-found", "Not Found"),
        ),
        "cancel twice": (
            api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth(RH)),
            (409, "invalid-state", "Conflict"),
        ),
        "retry a queued job": (
            api.client.post(f"/v1/jobs/{protect(api, [subject['id']]).json()['id']}/retry", headers=api.auth(ADMIN)),
            (409, "invalid-state", "Conflict"),
        ),
        "key reused": (
            protect(api, [subject["id"]], key="k-1", verification="none"),
            (409, "idempotency-conflict", "Conflict"),
        ),
        "subject twice": (
            protect(api, [subject["id"], subject["id"]]),
            (422, "validation-error", "Unprocessable Entity"),
        ),
        "unknown subject id": (protect(api, [missing]), (422, "unknown-subject", "Unprocessable Entity")),
        "unknown model": (
            protect(api, [subject["id"]], base_model="sd-99"),
            (422, "unknown-model", "Unprocessable Entity"),
        ),
    }
    assert {name: _problem(response) for name, (response, _) in cases.items()} == {
        name: expected for name, (_, expected) in cases.items()
    }


S3_ERROR = "An error occurred (AccessDenied) on bucket persguard-prod at http://10.0.0.7:8333"


class _DownStorage:
    """A storage whose writes fail as an unreachable backend's do, with the backend's own words."""

    def put_bytes(self, key: str, data: bytes) -> None:
        raise StorageError(S3_ERROR)

    def delete(self, key: str) -> None:
        raise StorageError(S3_ERROR)


def test_storage_down_while_registering_a_subject_is_a_503_problem_without_the_storage_error(make_env, caplog) -> None:
    env = make_env("sqlite")
    env.client.app.state.storage = _DownStorage()
    with caplog.at_level(logging.WARNING, logger="api.services.subjects"):
        response = env.client.post("/v1/subjects", headers=env.auth(RH), **upload([image_bytes(i) for i in range(3)]))
    assert _problem(response) == (503, "storage-unavailable", "Service Unavailable")
    assert response.json()["detail"] == "storage is unavailable, retry later"
    assert "persguard-prod" not in response.text and "10.0.0.7" not in response.text
    assert S3_ERROR in caplog.text, "the storage error is logged for the operator"
    assert env.count(Subject) == 0


def test_services_know_nothing_of_http() -> None:
    for path in SERVICES.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for name in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
        }
        bad = {m for m in imported if m.split(".")[0] in ("fastapi", "starlette") or m in ("api.deps", "api.errors")}
        assert not bad, f"{path.name} imports {bad}"
