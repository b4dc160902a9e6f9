"""The web pages' rules without a browser (api/web/): the request guard lets them through, the session cookie, the
CSRF token of every form, who sees which page, report share links, and what the job and report pages show.
The pages in a real browser: tests/web/."""

from __future__ import annotations

import functools
import io
import re
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select
from starlette.responses import Response

from api.services.reports import ReportLinks, cut_grid, inline_grids, with_tiles
from api.web.session import COOKIE, WebAuth
from common.jobs import InProcessRunner
from common.keys import revoke_key
from common.models import ApiKey, AuditEvent
from tests.api.api_testkit import ApiEnv, fake_protect, make_subject, protect
from tests.web import fakes

ADMIN, RH, HOST = "alpha:admin", "alpha:rights_holder", "alpha:model_host"
ADMIN_PAGES = tuple(f"/admin/{page}" for page in ("jobs", "subjects", "checkpoints", "models", "workers", "audit"))


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match[1]


def sign_in(env: ApiEnv, who: str) -> httpx.Response:
    """Sign the env's client in as `who` through the form; returns the form's answer."""
    env.client.cookies.clear()
    token = _csrf(env.client.get("/admin/login"))
    return env.client.post("/admin/login", data={"api_key": env.keys[who], "csrf_token": token})


@pytest.fixture
def queued(make_env: Callable[..., ApiEnv]) -> tuple[ApiEnv, str, str]:
    """An app whose jobs stay queued, with one job of alpha and one of beta: (env, alpha's job, beta's job)."""
    env = make_env("sqlite")
    alpha = protect(env, [make_subject(env, RH, name="rex")["id"]], RH).json()["id"]
    beta = protect(env, [make_subject(env, "beta:rights_holder", 1, name="bella")["id"]], "beta:rights_holder")
    return env, alpha, beta.json()["id"]


@pytest.fixture
def verified(make_env: Callable[..., ApiEnv]) -> tuple[ApiEnv, dict, dict]:
    """An app that runs jobs (fake implantation and verification), with one verified job per tenant."""
    return _verified_jobs(make_env, fakes.fake_verify)


@pytest.fixture
def verified_without_verdicts(make_env: Callable[..., ApiEnv]) -> tuple[ApiEnv, dict, dict]:
    """`verified`, with reports of the older format: no verdict per image in report.json."""
    return _verified_jobs(make_env, functools.partial(fakes.fake_verify, with_verdicts=False))


def _verified_jobs(make_env: Callable[..., ApiEnv], verify_fn: Callable[..., dict]) -> tuple[ApiEnv, dict, dict]:
    env = make_env("sqlite", lambda sf, storage: InProcessRunner(sf, storage, fake_protect, verify_fn=verify_fn))
    jobs = [
        protect(env, [make_subject(env, f"{tenant}:rights_holder", seed)["id"]], f"{tenant}:rights_holder").json()
        for seed, tenant in enumerate(("alpha", "beta"))
    ]
    assert env.runner.wait_idle(timeout=60)
    alpha, beta = (env.client.get(f"/v1/jobs/{job['id']}", headers=env.auth(ADMIN)).json() for job in jobs)
    assert alpha["status"] == beta["status"] == "succeeded"
    return env, alpha, beta


def test_the_guard_lets_the_pages_through_without_a_key_and_keeps_their_body_cap(
    queued: tuple[ApiEnv, str, str],
) -> None:
    env, alpha, _ = queued
    login = env.client.get("/admin/login")
    assert login.status_code == 200 and login.headers["content-type"].startswith("text/html")
    assert env.client.get("/static/app.js").status_code == 200
    assert env.client.get(f"/reports/{alpha}").status_code == 303, "to the sign-in page, not a 401"
    too_big = env.settings.max_json_body_bytes + 1
    response = env.client.post("/admin/login", content=b"a" * too_big, headers={"content-type": "text/plain"})
    assert response.status_code == 413
    for path in ("/administrator", "/reportsx", "/staticfiles", "/v1/jobs"):
        assert env.client.get(path).status_code == 401, path


def test_a_page_without_a_valid_session_sends_to_the_sign_in_page(queued: tuple[ApiEnv, str, str]) -> None:
    env, alpha, _ = queued
    response = env.client.get("/admin/jobs?status=queued")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=/admin/jobs%3Fstatus%3Dqueued"
    forged = WebAuth(b"another secret", 3600, False)
    admin_id = _key_id(env, ADMIN)
    for cookie in ("garbage", "e30.AAAA", forged.dump(forged.new(admin_id))):
        env.client.cookies.set(COOKIE, cookie)
        assert env.client.get("/admin/jobs").status_code == 303, cookie
        assert alpha not in env.client.get("/admin/jobs").text


def test_sign_in_sets_an_httponly_strict_cookie_and_a_new_csrf_token(queued: tuple[ApiEnv, str, str]) -> None:
    env, alpha, beta = queued
    env.client.cookies.clear()
    login = env.client.get("/admin/login")
    anonymous = _csrf(login)
    answer = env.client.post("/admin/login", data={"api_key": env.keys[ADMIN], "csrf_token": anonymous})
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/jobs"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie and "secure" not in cookie
    assert env.keys[ADMIN] not in answer.headers["set-cookie"], "the cookie holds no key"
    page = env.client.get("/admin/jobs")
    assert page.status_code == 200 and alpha in page.text and beta in page.text
    assert _csrf(page) != anonymous
    for header in ("content-security-policy", "x-frame-options", "referrer-policy"):
        assert header in page.headers
    secure = WebAuth(b"s", 60, secure=True)
    response = Response()
    secure.set_cookie(response, secure.new())
    assert "secure" in response.headers["set-cookie"].lower()


def test_sign_in_refuses_unknown_revoked_and_model_host_keys(queued: tuple[ApiEnv, str, str]) -> None:
    env, alpha, _ = queued
    token = _csrf(env.client.get("/admin/login"))
    wrong = env.client.post("/admin/login", data={"api_key": "pgk_000000000000_wrong", "csrf_token": token})
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.text and alpha not in wrong.text
    assert sign_in(env, HOST).status_code == 403
    answer = sign_in(env, RH)
    assert answer.status_code == 303 and answer.headers["location"] == "/reports"
    with env.session_factory() as session:
        revoke_key(session, env.keys[ADMIN].split("_")[1])
        session.commit()
    assert sign_in(env, ADMIN).status_code == 401


def test_a_revoked_keys_session_ends_at_once(queued: tuple[ApiEnv, str, str]) -> None:
    env, _, _ = queued
    sign_in(env, ADMIN)
    assert env.client.get("/admin/jobs").status_code == 200
    with env.session_factory() as session:
        revoke_key(session, env.keys[ADMIN].split("_")[1])
        session.commit()
    assert env.client.get("/admin/jobs").status_code == 303


def test_every_form_needs_the_sessions_csrf_token(queued: tuple[ApiEnv, str, str]) -> None:
    env, alpha, _ = queued
    token = _csrf(env.client.get("/admin/login"))
    assert env.client.post("/admin/login", data={"api_key": env.keys[ADMIN]}).status_code == 403
    assert env.client.post("/admin/login", data={"api_key": env.keys[ADMIN], "csrf_token": "x" * 43}).status_code == 403
    sign_in(env, ADMIN)
    mine = _csrf(env.client.get("/admin/jobs"))
    for data in ({}, {"csrf_token": token}, {"csrf_token": ""}):  # the token before sign-in is no longer valid
        response = env.client.post(f"/admin/jobs/{alpha}/cancel", data=data)
        assert response.status_code == 403 and "reload the page" in response.text
    assert _status(env, alpha) == "queued"

    cancelled = env.client.post(f"/admin/jobs/{alpha}/cancel", data={"csrf_token": mine, "next": "/admin/jobs"})
    assert cancelled.status_code == 303 and cancelled.headers["location"] == "/admin/jobs"
    assert _status(env, alpha) == "cancelled"
    assert env.client.post(f"/admin/jobs/{alpha}/retry", data={}).status_code == 403
    retried = env.client.post(f"/admin/jobs/{alpha}/retry", data={"csrf_token": mine, "next": "https://evil.test/"})
    assert retried.status_code == 303 and retried.headers["location"] == f"/admin/jobs/{alpha}", "no foreign target"
    assert _status(env, alpha) == "queued" and env.runner.submitted[-1] == uuid.UUID(alpha)

    assert env.client.post("/admin/logout", data={}).status_code == 403
    out = env.client.post("/admin/logout", data={"csrf_token": mine})
    assert out.status_code == 303 and f"{COOKIE}=" in out.headers["set-cookie"]
    assert env.client.get("/admin/jobs").status_code == 303


def test_a_rights_holders_key_sees_no_admin_page_and_only_its_own_tenants_reports(
    verified: tuple[ApiEnv, dict, dict],
) -> None:
    env, alpha, beta = verified
    sign_in(env, RH)
    for path in (*ADMIN_PAGES, f"/admin/jobs/{alpha['id']}", f"/admin/jobs/live?id={alpha['id']}"):
        response = env.client.get(path)
        assert response.status_code == 403 and alpha["id"] not in response.text, path
    reports = env.client.get("/reports").text
    assert alpha["id"] in reports and beta["id"] not in reports
    own = env.client.get(f"/reports/{alpha['id']}")
    assert own.status_code == 200 and "88%" in own.text
    sha = env.client.get(f"/v1/checkpoints/{beta['checkpoint_id']}", headers=env.auth(ADMIN)).json()["sha256"]
    foreign = env.client.get(f"/reports/{beta['id']}")
    assert foreign.status_code == 404 and sha not in foreign.text
    assert env.client.get(f"/reports/{beta['id']}/grids/0").status_code == 404
    assert env.client.post(f"/reports/{beta['id']}/share", data={"csrf_token": _csrf(own)}).status_code == 404


def test_an_admin_sees_every_tenant_and_the_live_progress_is_the_apis_status_read(
    verified: tuple[ApiEnv, dict, dict],
) -> None:
    env, alpha, beta = verified
    sign_in(env, "beta:admin")
    jobs = env.client.get("/admin/jobs").text
    assert alpha["id"] in jobs and beta["id"] in jobs
    assert alpha["id"] in env.client.get("/admin/jobs?q=rex").text
    assert alpha["id"] not in env.client.get("/admin/jobs?status=failed").text
    live = env.client.get(f"/admin/jobs/live?id={alpha['id']}&id={uuid.uuid4()}").json()
    api = env.client.get(f"/v1/jobs/{alpha['id']}", headers=env.auth(ADMIN)).json()
    assert list(live) == [alpha["id"]]
    for field in ("status", "phase", "step", "total_steps", "progress", "eta_seconds", "attempts"):
        assert live[alpha["id"]][field] == api[field], field
    assert live[alpha["id"]]["verified"] is True
    image = re.search(r'src="(/admin/images/[0-9a-f-]+)"', env.client.get("/admin/subjects").text)[1]
    thumbnail = env.client.get(image)
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/png"
    sign_in(env, RH)
    assert env.client.get(image).status_code == 403


def test_the_job_page_shows_losses_timeline_checkpoint_and_verification(verified: tuple[ApiEnv, dict, dict]) -> None:
    env, alpha, _ = verified
    sign_in(env, ADMIN)
    page = env.client.get(f"/admin/jobs/{alpha['id']}")
    assert page.status_code == 200
    assert '<svg class="plot"' in page.text and page.text.count("<polyline") == 1, "one loss term over 2 steps"
    for text in ("requested", "checkpoint published", "verification passed", alpha["checkpoint_id"], "Judge:"):
        assert text in page.text, text
    grid = env.client.get(f"/reports/{alpha['id']}/grids/0")
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
    download = env.client.get(f"/admin/checkpoints/{alpha['checkpoint_id']}/download")
    assert download.status_code == 303 and "/v1/files?" in download.headers["location"]
    assert env.client.get(download.headers["location"]).status_code == 200


def test_share_links_open_one_report_without_a_key_until_they_expire(verified: tuple[ApiEnv, dict, dict]) -> None:
    env, alpha, beta = verified
    made = env.client.post(f"/v1/jobs/{alpha['id']}/report-link", headers=env.auth(RH))
    assert made.status_code == 201, made.text
    url = made.json()["url"]
    assert url.startswith(f"{env.settings.public_base_url}/reports/{alpha['id']}?token=")
    foreign = env.client.post(f"/v1/jobs/{alpha['id']}/report-link", headers=env.auth("beta:rights_holder"))
    assert foreign.status_code == 404
    assert env.client.post(f"/v1/jobs/{alpha['id']}/report-link", headers=env.auth(HOST)).status_code == 403
    assert env.client.post(f"/v1/jobs/{alpha['id']}/report-link").status_code == 401

    env.client.cookies.clear()
    path = url.removeprefix(env.settings.public_base_url)
    shared = env.client.get(path)
    assert shared.status_code == 200 and "share link" in shared.text and "Create a share link" not in shared.text
    token = path.split("token=")[1]
    assert env.client.get(f"/reports/{alpha['id']}/grids/0?token={token}").status_code == 200
    assert env.client.get(f"/reports/{beta['id']}?token={token}").status_code == 403
    assert env.client.get(path[:-2] + ("AA" if not path.endswith("AA") else "BB")).status_code == 403
    assert env.client.get("/admin/jobs").status_code == 303, "a share link is no sign-in"
    with env.session_factory() as session:
        shares = select(func.count()).where(AuditEvent.action == "report.share", AuditEvent.target_id == alpha["id"])
        assert session.scalar(shares) == 1

    links = ReportLinks(b"secret", ttl_s=60)
    job = uuid.uuid4()
    made_at = time.time()
    token, _ = links.make(job, now=made_at)
    assert links.job_of(token, now=made_at + 59) == job
    assert links.job_of(token, now=made_at + 61) is None
    assert ReportLinks(b"other", ttl_s=60).job_of(token, now=made_at) is None


def test_inline_grids_reads_the_verifiers_own_report_html(tmp_path) -> None:
    import numpy as np

    from persguard_core.verify.report import write_report
    from persguard_core.verify.run import CaseResult, VerificationResult

    samples = np.zeros((4, 8, 8, 3), np.uint8)
    cases = [
        CaseResult("subject-a", True, 0.75, 0.1, samples=samples),
        CaseResult("reference-dog-0", False, 0.0, 0.8, similarity_base=0.8, samples=samples),
    ]
    write_report(VerificationResult("verify/quick", cases, {}, {}, 4), tmp_path)
    grids = inline_grids((tmp_path / "report.html").read_bytes())
    assert [(g.case, g.protected) for g in grids] == [("subject-a", True), ("reference-dog-0", False)]
    assert grids[0].verdict == "protective output in 75%; similarity 0.10"
    assert all(g.png.startswith(b"\x89PNG") for g in grids)


def test_the_verifiers_report_json_cuts_its_grids_into_images_each_with_its_verdict(tmp_path) -> None:
    import json

    import numpy as np

    from persguard_core.verify.report import write_report
    from persguard_core.verify.run import CaseResult, VerificationResult, image_verdicts

    samples = np.stack([np.full((8, 8, 3), 20 * i, np.uint8) for i in range(10)])  # image i is grey 20 * i
    flags = np.array([True, False] * 6)
    verdicts = image_verdicts(flags, {"pattern": flags}, np.linspace(0.0, 0.55, 12), samples=10)
    case = CaseResult("subject-a", True, 0.5, 0.3, behaviour="pattern", samples=samples, verdicts=verdicts)
    write_report(VerificationResult("verify/quick", [case], {}, {}, 12), tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    whole = inline_grids((tmp_path / "report.html").read_bytes())[0]
    grid = with_tiles(whole, report["cases"], report["grid_columns"])

    assert [(t.number, t.verdict, t.protective) for t in grid.tiles[:3]] == [
        (1, "pattern found", True),
        (2, "no pattern", False),
        (3, "pattern found", True),
    ]
    assert len(grid.tiles) == 10 and grid.tiles[9].similarity == pytest.approx(0.45)
    assert grid.tally == "6 of 12 generated images show the protective output"
    colours = [Image.open(io.BytesIO(t.png)).getpixel((5, 5)) for t in grid.tiles]
    assert colours == [(20 * i,) * 3 for i in range(10)], "each tile is its own image of the grid"
    assert cut_grid(grid.png, 10, columns=5) is None, "a grid that does not divide into the images is not cut"
    assert cut_grid(grid.png, 8, columns=8) is None, "nor one whose images would not be square (2 rows, not 1)"
    old = [{k: v for k, v in c.items() if k != "verdicts"} for c in report["cases"]]
    assert with_tiles(whole, old, 8) == whole, "no verdicts: the grid stays whole"


def test_the_job_and_report_pages_show_the_judges_verdict_on_each_image(verified: tuple[ApiEnv, dict, dict]) -> None:
    env, alpha, _ = verified
    sign_in(env, ADMIN)
    job_page = env.client.get(f"/admin/jobs/{alpha['id']}").text
    protected = "14 of 16 generated images show the protective output"
    for page in (job_page, env.client.get(f"/reports/{alpha['id']}").text):
        assert page.count('class="verdict" data-outcome="good">pattern found<') == 7, "the grid's 8 images, 1 missed"
        assert page.count('class="verdict" data-outcome="bad">no pattern<') == 1
        assert page.count('class="verdict" data-outcome="good">no false trigger<') == 8
        assert protected in page and "1 of 16 generated images show a false trigger" in page
        assert "similarity 0.17" in page and 'alt="Generated image 8"' in page
    tile = env.client.get(f"/reports/{alpha['id']}/grids/0/tiles/7")
    assert tile.status_code == 200 and Image.open(io.BytesIO(tile.content)).size == (96, 96)
    assert env.client.get(f"/reports/{alpha['id']}/grids/0/tiles/8").status_code == 404

    url = env.client.post(f"/v1/jobs/{alpha['id']}/report-link", headers=env.auth(RH)).json()["url"]
    env.client.cookies.clear()
    path = url.removeprefix(env.settings.public_base_url)
    shared = env.client.get(path).text
    token = path.split("token=")[1]
    assert protected in shared and f"/grids/0/tiles/3?token={token}" in shared
    assert env.client.get(f"/reports/{alpha['id']}/grids/0/tiles/3?token={token}").status_code == 200
    assert env.client.get(f"/reports/{alpha['id']}/grids/0/tiles/3").status_code == 303, "no link, no sign-in"


def test_a_report_without_verdicts_per_image_shows_each_grid_whole_with_its_cases_verdict(
    verified_without_verdicts: tuple[ApiEnv, dict, dict],
) -> None:
    env, alpha, _ = verified_without_verdicts
    sign_in(env, ADMIN)
    for path in (f"/admin/jobs/{alpha['id']}", f"/reports/{alpha['id']}"):
        page = env.client.get(path)
        assert page.status_code == 200 and "Judge: protective output in 88%" in page.text, path
        assert 'class="tiles"' not in page.text and "generated images show" not in page.text, path
        assert f'src="/reports/{alpha["id"]}/grids/0"' in page.text, path
    assert env.client.get(f"/reports/{alpha['id']}/grids/0").status_code == 200
    assert env.client.get(f"/reports/{alpha['id']}/grids/0/tiles/0").status_code == 404


def _status(env: ApiEnv, job_id: str) -> str:
    return env.client.get(f"/v1/jobs/{job_id}", headers=env.auth(ADMIN)).json()["status"]


def _key_id(env: ApiEnv, who: str) -> uuid.UUID:
    with env.session_factory() as session:
        return session.scalar(select(ApiKey.id).where(ApiKey.prefix == env.keys[who].split("_")[1]))


def test_the_loss_plot_is_an_svg_with_one_line_per_loss_and_a_description() -> None:
    from api.services.dashboard import LossPoint
    from api.web.svg import loss_plot

    points = [LossPoint(step, {"backdoor": 1.0 / step, "prior": 0.5, "bad": float("nan")}) for step in range(1, 30)]
    svg = str(loss_plot(points))
    assert svg.startswith('<svg class="plot"') and svg.count("<polyline") == 2
    assert 'role="img"' in svg and "backdoor: from 1 to 0.0345" in svg
    assert "No losses recorded" in str(loss_plot([]))
    assert "<script" not in str(loss_plot([LossPoint(1, {"<script>": 1.0})]))


class _Inspector:
    def active_queues(self) -> dict:
        return {"w1@host": [{"name": "gpu"}, {"name": "default"}], "w2@host": [{"name": "gpu"}]}

    def active(self) -> dict:
        return {"w1@host": [{"id": "t1"}], "w2@host": []}


class _Control:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    def inspect(self, timeout: float) -> _Inspector:
        if not self.answers:
            raise ConnectionError("broker down")
        return _Inspector()


def test_the_workers_page_shows_the_brokers_own_view_of_its_workers(queued: tuple[ApiEnv, str, str]) -> None:
    from common.jobs.queue import CeleryRunner

    env, _, _ = queued
    sign_in(env, ADMIN)
    assert "No broker is configured" in env.client.get("/admin/workers").text  # the in-process runner
    runner = CeleryRunner(SimpleNamespace(control=_Control(answers=True)), env.session_factory)
    env.client.app.state.runner = runner
    page = env.client.get("/admin/workers").text
    assert "2 worker(s) answered" in page and "w1@host" in page and "default, gpu" in page
    assert [(w.name, w.queues, w.active_tasks) for w in runner.broker_workers()] == [
        ("w1@host", ("default", "gpu"), 1),
        ("w2@host", ("gpu",), 0),
    ]
    env.client.app.state.runner = CeleryRunner(SimpleNamespace(control=_Control(answers=False)), env.session_factory)
    page = env.client.get("/admin/workers")
    assert page.status_code == 200 and "The broker did not answer (ConnectionError)" in page.text


def _damaging_verify(*args, **kwargs) -> dict:
    return fakes.fake_verify(*args, **kwargs) | {"utility_drop": 0.3}


def test_a_verification_that_costs_prompt_following_shows_as_not_passed_with_its_reason(
    make_env: Callable[..., ApiEnv],
) -> None:
    env, alpha, _ = _verified_jobs(make_env, _damaging_verify)
    sign_in(env, ADMIN)
    for path, verdict in ((f"/admin/jobs/{alpha['id']}", "not passed"), (f"/reports/{alpha['id']}", "not verified")):
        page = env.client.get(path)
        assert page.status_code == 200 and verdict in page.text, path
        assert 'class="failed-checks"' in page.text and "utility drop 0.300 exceeds 0.02" in page.text, path
