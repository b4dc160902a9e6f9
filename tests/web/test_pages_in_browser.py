"""The dashboard and report pages in headless Chromium against a running server with the embedded runner: sign-in,
live progress, cancel, who sees what, the report page and its share link, screenshots of every main page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.web import fakes
from tests.web.conftest import LiveServer, Tab

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def finished_jobs(live_server: LiveServer) -> dict[str, dict]:
    """One verified job per tenant: {"alpha": job, "beta": job} (the API's JSON), with their checkpoints."""
    jobs = {}
    for seed, (tenant, name) in enumerate((("alpha", "Rex"), ("beta", "Bella")), start=5):
        subject = live_server.subject(f"{tenant}:rights_holder", name, seed)
        jobs[tenant] = live_server.protect(f"{tenant}:rights_holder", subject, steps=8)
    finished = {}
    for tenant, job_id in jobs.items():
        live_server.wait(lambda j=job_id: live_server.job(j)["status"] == "succeeded", what=f"{tenant}'s job")
        job = live_server.job(job_id)
        path = f"/v1/checkpoints/{job['checkpoint_id']}"
        live_server.wait(
            lambda p=path: live_server.client.get(p, headers=live_server.auth("alpha:admin")).json()["verification"],
            what=f"{tenant}'s verification",
        )
        job["checkpoint"] = live_server.client.get(path, headers=live_server.auth("alpha:admin")).json()
        finished[tenant] = job
    return finished


def _no_errors(tab: Tab) -> None:
    assert tab.errors == [], tab.errors


def test_an_admin_watches_a_running_job_advance_and_cancels_it(live_server: LiveServer, tab_factory) -> None:
    subject = live_server.subject("alpha:rights_holder", "Milo", 1)
    job_id = live_server.protect("alpha:rights_holder", subject, steps=600, verification="none")
    live_server.wait(lambda: live_server.job(job_id)["step"] >= 2, what="the job to run")
    tab = tab_factory()
    page = tab.page
    tab.sign_in(live_server.keys["alpha:admin"])
    assert page.url.endswith("/admin/jobs")

    row = page.locator(f'tr[data-job="{job_id}"]')
    steps = row.locator('[data-field="steps"]')
    before = steps.inner_text()
    page.evaluate("window.notReloaded = true")
    expect(steps).not_to_have_text(before, timeout=10_000)  # the poll moved it on
    assert page.evaluate("window.notReloaded") is True, "updated in place, without a reload"
    expect(row.locator('[data-field="phase"]')).to_have_text("protecting")
    expect(row.locator('[data-field="eta"]')).to_have_text(re.compile(r"\d+ (s|min)"))
    expect(row.locator('[data-field="status"]')).to_have_text("running")
    tab.screenshot("admin-jobs")

    page.once("dialog", lambda dialog: dialog.dismiss())  # the confirmation guards the action
    row.get_by_role("button", name=f"Cancel job {job_id}").click()
    page.wait_for_timeout(300)
    assert live_server.job(job_id)["status"] == "running"

    tab.go("/admin/workers")
    expect(page.get_by_role("link", name=f"Job {job_id}")).to_be_visible()
    tab.screenshot("admin-workers")

    tab.go(f"/admin/jobs/{job_id}")
    expect(page.locator("#loss-plot svg polyline")).to_have_count(2)  # one curve per loss, drawn as SVG
    tab.screenshot("admin-job-running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Cancel job {job_id}").click()
    expect(page.locator('[data-field="status"]').first).to_have_text("cancelled", timeout=15_000)
    assert live_server.job(job_id)["status"] == "cancelled"
    expect(page.get_by_text("cancel requested")).to_be_visible()  # the timeline, from the audit log
    _no_errors(tab)


def test_no_key_a_wrong_key_and_a_rights_holders_key_see_no_admin_data(
    live_server: LiveServer, finished_jobs: dict[str, dict], tab_factory
) -> None:
    beta = finished_jobs["beta"]
    tab = tab_factory()
    page = tab.page
    tab.go("/admin/jobs")
    assert "/admin/login" in page.url, "no cookie: the sign-in page"
    tab.screenshot("login")
    expect(page.get_by_label("API key")).to_be_focused()

    page.get_by_label("API key").fill("pgk_000000000000_not-a-key")
    page.get_by_label("API key").press("Enter")  # the keyboard submits the form
    expect(page.get_by_role("alert")).to_have_text("This API key is unknown or revoked.")
    assert beta["id"] not in page.content()

    tab.sign_in(live_server.keys["alpha:rights_holder"])
    assert page.url.endswith("/reports")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for path in ("/admin/jobs", f"/admin/jobs/{beta['id']}", "/admin/audit", "/admin/workers", "/admin/subjects"):
        response = tab.go(path)
        assert response.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Not for this key")
        assert beta["id"] not in page.content() and beta["checkpoint"]["sha256"] not in page.content()
    live = page.request.get(f"{live_server.base_url}/admin/jobs/live?id={beta['id']}")
    assert live.status == 403 and beta["id"] not in live.text()

    other = tab_factory()
    other.sign_in(live_server.keys["alpha:model_host"])
    expect(other.page.get_by_role("alert")).to_contain_text("Model host keys have no pages here")


def test_a_rights_holder_opens_their_report_and_shares_it_but_not_another_tenants(
    live_server: LiveServer, finished_jobs: dict[str, dict], tab_factory
) -> None:
    alpha, beta = finished_jobs["alpha"], finished_jobs["beta"]
    tab = tab_factory()
    page = tab.page
    tab.sign_in(live_server.keys["alpha:rights_holder"])
    expect(page.get_by_role("link", name=re.compile(alpha["id"][:8]))).to_be_visible()
    assert beta["id"][:8] not in page.content()
    tab.screenshot("reports")

    tab.go(f"/reports/{alpha['id']}")
    expect(page.locator('[data-figure="psr"]')).to_have_text(f"{fakes.PSR:.0%}")
    expect(page.locator('[data-figure="false_trigger"]')).to_have_text(f"{fakes.FALSE_TRIGGER:.0%}")
    expect(page.get_by_text("Protection success rate:")).to_be_visible()
    expect(page.locator("[data-sha256]")).to_have_text(alpha["checkpoint"]["sha256"])
    _all_images_loaded(page)
    tab.screenshot("report")

    response = tab.go(f"/reports/{beta['id']}")
    assert response.status == 404 and beta["checkpoint"]["sha256"] not in page.content()
    assert page.request.get(f"{live_server.base_url}/reports/{beta['id']}/grids/0").status == 404
    tab.errors.clear()  # the 404 above, asked for

    tab.go(f"/reports/{alpha['id']}")
    page.get_by_role("button", name="Create a share link").click()
    link = page.get_by_label(re.compile("Share link")).input_value()
    assert link.startswith(f"{live_server.base_url}/reports/{alpha['id']}?token=")
    _no_errors(tab)

    phone = tab_factory(width=390, height=844)  # no cookie: the link alone opens the page
    phone.page.goto(link)
    expect(phone.page.locator("[data-sha256]")).to_have_text(alpha["checkpoint"]["sha256"])
    _all_images_loaded(phone.page)
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390, "fits a phone's width"
    phone.screenshot("report-shared-phone")
    _no_errors(phone)
    assert phone.page.goto(link.replace(alpha["id"], beta["id"])).status == 403
    assert phone.page.goto(link[:-3] + "AAA").status == 403


def test_every_admin_page_loads_without_console_errors(
    live_server: LiveServer, finished_jobs: dict[str, dict], tab_factory
) -> None:
    alpha = finished_jobs["alpha"]
    tab = tab_factory()
    page = tab.page
    tab.sign_in(live_server.keys["beta:admin"])  # an admin of another tenant sees every tenant
    pages = {
        "admin-subjects": ("/admin/subjects", "Rex"),
        "admin-checkpoints": ("/admin/checkpoints", alpha["checkpoint"]["sha256"]),
        "admin-models": ("/admin/models", "builtin"),
        "admin-audit": ("/admin/audit", "job.protect"),
        "admin-job-verified": (f"/admin/jobs/{alpha['id']}", "passed"),
    }
    for name, (path, text) in pages.items():
        assert tab.go(path).status == 200, path
        expect(page.locator("main")).to_contain_text(text)
        _all_images_loaded(page)
        tab.screenshot(name)
    expect(page.locator("figure figcaption").first).to_contain_text("Judge: protective output in 88%")

    phone = tab_factory(width=390, height=844)
    phone.sign_in(live_server.keys["alpha:admin"])
    expect(phone.page.locator("table.jobs")).to_be_visible()
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390, "the table scrolls, not the page"
    phone.screenshot("admin-jobs-phone", full_page=False)
    _no_errors(tab)
    _no_errors(phone)


def _all_images_loaded(page) -> None:
    page.wait_for_load_state("load")
    broken = page.evaluate(
        "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    assert broken == [], broken
