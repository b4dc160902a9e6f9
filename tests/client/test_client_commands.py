"""`persguard client ...` against a live `persguard serve` in a subprocess (embedded: SQLite, local storage, the
in-process runner) whose implantation (PERSGUARD_PROTECT_FN, tests/client/fakes.py) publishes the built-in model
unchanged: the commands a user and a CI run, their exit statuses and messages, and that the API key never appears
in what they print."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from persguard_client import PersGuardClient
from tests.api.api_testkit import image_bytes

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Live:
    url: str
    key: str
    cwd: Path
    outputs: list[str]

    def run(self, *args: str, key_from: str = "env", timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`persguard client ARGS --url URL` with the key from the environment, a flag, or nowhere."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSGUARD_")}
        env |= {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", "persguard_cli.main", "client", *args, "--url", self.url]
        if key_from == "env":
            env["PERSGUARD_API_KEY"] = self.key
        elif key_from == "flag":
            argv += ["--key", self.key]
        result = subprocess.run(argv, cwd=self.cwd, env=env, capture_output=True, text=True, timeout=timeout)
        self.outputs += [result.stdout, result.stderr]
        return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rights_holder_key(cwd: Path) -> str:
    """A tenant and a rights-holder key in the SQLite file the server under `cwd` will use (./var, its default)."""
    from common.db import make_engine, make_session_factory
    from common.keys import create_key, create_tenant
    from common.migrate import upgrade

    (cwd / "var").mkdir()
    url = f"sqlite:///{cwd / 'var' / 'persguard.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        create_tenant(session, "ci")
        key = create_key(session, "ci", "rights_holder").secret
        session.commit()
    engine.dispose()
    return key


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cwd = tmp_path_factory.mktemp("serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSGUARD_")}
    port = _free_port()
    env |= {
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "PERSGUARD_PROTECT_FN": "tests.client.fakes:unprotected_protect",
    }
    key = _rights_holder_key(cwd)
    argv = [sys.executable, "-m", "persguard_cli.main", "serve", "--port", str(port)]
    log = (cwd / "serve.log").open("wb")
    server = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (cwd / "serve.log").read_text()[-2000:]
                time.sleep(0.2)
        yield Live(url, key, cwd, [])
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module", autouse=True)
def _key_never_printed(live: Live) -> Iterator[None]:
    yield
    secret = live.key.split("_", 2)[2]
    assert live.outputs and not [out for out in live.outputs if secret in out]


def _folder(root: Path) -> Path:
    root.mkdir()
    for i in range(3):
        (root / f"photo{i}.png").write_bytes(image_bytes(i))
    return root


def test_a_subject_folder_is_protected_waited_for_and_pulled_with_its_sha256(live: Live) -> None:
    created = live.run("create-subject", str(_folder(live.cwd / "rex")), "--class-noun", "dog")
    assert created.returncode == 0, created.stderr
    subject = created.stdout.strip()
    assert uuid.UUID(subject) and "3 images" in created.stderr

    protected = live.run("protect", "--subject", subject, "--profile", "fast", "--verification", "none", "--wait")
    assert protected.returncode == 0, protected.stderr
    job = protected.stdout.strip()
    assert "succeeded" in protected.stderr and "step 100/100" in protected.stderr

    waited = live.run("wait", job, key_from="flag")
    checkpoint = waited.stdout.strip()
    assert waited.returncode == 0 and uuid.UUID(checkpoint)

    out = live.cwd / "pulled" / "model.tar"
    pulled = live.run("pull", "--job", job, "--out", str(out), "--extract", str(live.cwd / "model"))
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == str(out) and "sha256 verified" in pulled.stderr
    assert (live.cwd / "model" / "model_index.json").is_file()
    with PersGuardClient(live.url, live.key) as client:
        assert hashlib.sha256(out.read_bytes()).hexdigest() == client.get_checkpoint(checkpoint).sha256


def test_a_refused_request_prints_the_servers_detail_and_exits_1(live: Live) -> None:
    missing = str(uuid.uuid4())
    result = live.run("protect", "--subject", missing, key_from="flag")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: 422") and f"unknown subject ids: {missing}" in result.stderr


def test_a_wrong_key_is_refused_without_being_echoed(live: Live) -> None:
    wrong = f"pgk_{live.key.split('_')[1]}_not-the-secret-{uuid.uuid4().hex}"
    env_key, live.key = live.key, wrong
    try:
        result = live.run("wait", str(uuid.uuid4()), key_from="flag")
    finally:
        live.key = env_key
    assert result.returncode == 1 and result.stderr.startswith("error: 401")
    assert wrong.split("_", 2)[2] not in result.stdout + result.stderr


def test_no_key_is_a_usage_error(live: Live) -> None:
    result = live.run("wait", str(uuid.uuid4()), key_from="none")
    assert result.returncode == 2 and "no API key" in result.stderr


def test_smoke_runs_every_stage_and_refuses_a_checkpoint_without_the_backdoor(live: Live) -> None:
    result = live.run("smoke", "--key", live.key, key_from="none", timeout=300)

    assert result.returncode == 1, result.stdout + result.stderr
    stages = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert stages == ["ready", "subject", "protect", "wait", "download", "load", "cleanup"]
    assert "sha256" in result.stdout and "StableDiffusionPipeline.from_pretrained" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("smoke failed at judge after ") and "no backdoor" in last, result.stderr
