"""A running PersGuard server (uvicorn in a thread, the embedded in-process runner with the fakes of
tests/web/fakes.py, SQLite and local storage) and a headless Chromium driven by Playwright.

The browser is Debian's `chromium` (or PERSGUARD_TEST_CHROMIUM); without it the tests fail and say how to install
it, never skip. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.web import fakes

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


def chromium_executable() -> str:
    path = os.environ.get("PERSGUARD_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail(
            "the browser tests need Chromium and found none: install it with `apt-get install -y chromium` "
            "(Debian), or point PERSGUARD_TEST_CHROMIUM at a Chromium executable"
        )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    base_url: str
    keys: dict[str, str]
    client: httpx.Client
    subjects: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def subject(self, who: str, name: str, seed: int) -> str:
        from tests.api.api_testkit import image_bytes, upload

        images = [image_bytes(seed * 10 + i, size=(48, 48)) for i in range(3)]
        response = self.client.post("/v1/subjects", headers=self.auth(who), **upload(images, name=name))
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def protect(self, who: str, subject_id: str, steps: int, verification: str = "quick") -> str:
        body = {"subjects": [{"subject_id": subject_id}], "steps": steps, "verification": verification}
        response = self.client.post("/v1/protections", headers=self.auth(who), json=body)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, job_id: str, who: str = "alpha:admin") -> dict:
        return self.client.get(f"/v1/jobs/{job_id}", headers=self.auth(who)).json()

    def wait(self, condition: Callable[[], bool], timeout_s: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[LiveServer]:
    import uvicorn

    from api.main import create_app
    from common.db import make_engine, make_session_factory
    from common.jobs import InProcessRunner, JobConfig
    from common.keys import create_key, create_tenant
    from common.settings import Settings
    from common.storage import LocalStorage

    root = tmp_path_factory.mktemp("web")
    database = root / "db.sqlite3"
    shutil.copyfile(sqlite_template, database)
    url = f"sqlite:///{database}"
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    engine = make_engine(url)
    session_factory = make_session_factory(engine)
    storage = LocalStorage(root / "storage", secrets.token_bytes(32))
    config = JobConfig(workdir_root=root / "jobs", progress_interval_s=0.2, cancel_check_interval_s=0.2)
    runner = InProcessRunner(
        session_factory, storage, fakes.slow_protect, verify_fn=fakes.fake_verify, config=config, max_workers=2
    )
    settings = Settings(database_url=url, workdir=root / "jobs", public_base_url=base_url)
    app = create_app(settings, session_factory=session_factory, storage=storage, runner=runner)
    keys = {}
    with session_factory() as session:
        for tenant in ("alpha", "beta"):
            create_tenant(session, tenant)
            for role in ("rights_holder", "admin", "model_host"):
                keys[f"{tenant}:{role}"] = create_key(session, tenant, role).secret
        session.commit()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield LiveServer(base_url, keys, client)
    server.should_exit = True
    thread.join(timeout=30)
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Tab:
    """A browser page in a fresh context (its own cookies) that records console errors and failed requests."""

    page: object
    base_url: str
    errors: list[str] = field(default_factory=list)

    def go(self, path: str) -> object:
        return self.page.goto(self.base_url + path)

    def sign_in(self, key: str) -> None:
        self.go("/admin/login")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def tab_factory(browser, live_server: LiveServer) -> Iterator[Callable[..., Tab]]:
    contexts = []

    def make(width: int = 1280, height: int = 900) -> Tab:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        tab = Tab(context.new_page(), live_server.base_url)
        tab.page.on("console", lambda m: tab.errors.append(f"console: {m.text}") if m.type == "error" else None)
        tab.page.on("pageerror", lambda e: tab.errors.append(f"page error: {e}"))
        return tab

    yield make
    for context in contexts:
        context.close()
