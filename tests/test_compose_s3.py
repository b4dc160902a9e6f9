"""The compose file's S3 server set-up, run for real with the `weed` binary the tests use (no Docker engine):

docker/seaweedfs-start.sh renders the identities of docker/s3.json from the environment (and refuses a missing or
placeholder secret), SeaweedFS runs with docker/security.toml and the JWT keys from the environment,
docker/seaweedfs-create-bucket.sh creates the bucket, and each identity can do what its process does, and no more.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.settings import Settings
from common.storage import S3Storage, StorageError, storage_from_settings
from tests.seaweedfs import wait_for_s3, weed_binary, weed_mini

REPO = Path(__file__).resolve().parents[1]
START = REPO / "docker" / "seaweedfs-start.sh"
CREATE_BUCKET = REPO / "docker" / "seaweedfs-create-bucket.sh"
BUCKET = "persguard"
ROLES = ("API", "WORKER", "BEAT")


def _secrets() -> dict[str, str]:
    values = {f"S3_{role}_ACCESS_KEY": secrets.token_hex(10).upper() for role in ROLES}
    values |= {f"S3_{role}_SECRET_KEY": secrets.token_hex(20) for role in ROLES}
    values |= {
        name: secrets.token_hex(32)
        for name in ("WEED_JWT_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_READ_KEY")
    }
    return values


def _start_script(tmp: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "WEED_"))}
    return subprocess.run(
        ["sh", str(START), *command],
        env={**base, "S3_CONFIG_TEMPLATE": str(REPO / "docker" / "s3.json"), "S3_CONFIG": str(tmp / "s3.json"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@dataclass(frozen=True)
class Deployment:
    endpoint_url: str
    master: str  # host:port.grpcPort, as `weed shell -master` takes it
    master_url: str
    filer_url: str
    secrets: dict[str, str]
    bucket_runs: tuple[subprocess.CompletedProcess[str], ...]

    def storage(self, role: str) -> S3Storage:
        """S3 storage as the api, a worker or beat builds it from its compose settings."""
        identity = role.upper()
        process = "api" if role == "api" else "worker"
        settings = Settings(
            storage_backend="s3",
            s3_bucket=BUCKET,
            s3_endpoint_url=self.endpoint_url,
            s3_multipart_threshold_bytes=5 * 1024 * 1024,
            s3_multipart_chunk_bytes=5 * 1024 * 1024,
            **{
                f"s3_{process}_access_key": self.secrets[f"S3_{identity}_ACCESS_KEY"],
                f"s3_{process}_secret_key": self.secrets[f"S3_{identity}_SECRET_KEY"],
            },
        )
        storage = storage_from_settings(settings, role=process)
        assert isinstance(storage, S3Storage)
        return storage


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("compose-s3")
    shutil.copy(REPO / "docker" / "security.toml", root / "security.toml")  # read from the working directory
    values = _secrets()
    weed, ports = weed_mini(root)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "WEED_"))}
    env = {
        **base,
        **values,
        "GOMAXPROCS": "1",
        "S3_CONFIG_TEMPLATE": str(REPO / "docker" / "s3.json"),
        "S3_CONFIG": str(root / "s3.json"),
    }
    log = root / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["sh", str(START), *weed], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        wait_for_s3(url, process, log)
        master = f"127.0.0.1:{ports['master.port']}.{ports['master.port.grpc']}"
        script_env = {**base, "WEED": str(weed_binary()), "SEAWEEDFS_MASTER": master, "S3_BUCKET": BUCKET}
        runs = tuple(
            subprocess.run(["sh", str(CREATE_BUCKET)], env=script_env, capture_output=True, text=True, timeout=60)
            for _ in range(2)
        )
        yield Deployment(
            endpoint_url=url,
            master=master,
            master_url=f"http://127.0.0.1:{ports['master.port']}",
            filer_url=f"http://127.0.0.1:{ports['filer.port']}",
            secrets=values,
            bucket_runs=runs,
        )
    finally:
        process.kill()
        process.wait()


def _key(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4()}/object.bin"


def _denied(action: Callable[[], object]) -> None:
    with pytest.raises(StorageError, match="AccessDenied|403"):  # a HEAD answer has no body: only the status
        action()


def test_the_start_script_renders_the_identities_privately(tmp_path: Path) -> None:
    values = _secrets()
    result = _start_script(tmp_path, values, "true")
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "s3.json"
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    identities = {i["name"]: i for i in json.loads(rendered.read_text())["identities"]}
    api = identities["persguard-api"]["credentials"][0]
    assert (api["accessKey"], api["secretKey"]) == (values["S3_API_ACCESS_KEY"], values["S3_API_SECRET_KEY"])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"S3_WORKER_SECRET_KEY": ""}, "S3_WORKER_SECRET_KEY"),
        ({"S3_BEAT_ACCESS_KEY": "change-me-beat-access-key"}, "S3_BEAT_ACCESS_KEY"),
        ({"WEED_JWT_FILER_SIGNING_KEY": ""}, "WEED_JWT_FILER_SIGNING_KEY"),
        ({"S3_API_SECRET_KEY": 'a"b'}, "S3_API_SECRET_KEY"),
    ],
    ids=["unset", "placeholder", "jwt-unset", "not-json-safe"],
)
def test_the_start_script_refuses_a_missing_or_placeholder_secret(
    tmp_path: Path, change: dict[str, str], named: str
) -> None:
    values = {k: v for k, v in {**_secrets(), **change}.items() if v}
    result = _start_script(tmp_path, values, "sh", "-c", "echo started")
    assert result.returncode != 0 and "started" not in result.stdout
    assert named in result.stderr
    assert not (tmp_path / "s3.json").exists()


def test_the_bucket_is_created_and_creating_it_again_succeeds(seaweedfs: Deployment) -> None:
    first, again = seaweedfs.bucket_runs
    assert first.returncode == 0 and "created bucket persguard" in first.stdout, first.stdout + first.stderr
    assert again.returncode == 0 and "already exists" in again.stdout, again.stdout + again.stderr


def test_the_api_identity_writes_subjects_and_reads_subjects_checkpoints_and_reports_only(
    seaweedfs: Deployment,
) -> None:
    api, worker = seaweedfs.storage("api"), seaweedfs.storage("worker")  # ensure_bucket and check as at start-up
    api.check()
    subject = api.put_bytes(_key("subjects"), b"png").key
    api.delete(subject)
    checkpoint = worker.put_bytes(_key("checkpoints"), b"model").key
    with urllib.request.urlopen(api.presigned_get_url(checkpoint, 60, "model.tar")) as response:
        assert response.read() == b"model", "a model host downloads with the api's presigned URL"
    _denied(lambda: api.put_bytes(_key("checkpoints"), b"forged"))
    _denied(lambda: api.put_bytes(_key("jobs"), b"x"))
    _denied(lambda: api.delete(checkpoint))
    report = worker.put_bytes(_key("reports"), b"{}").key
    assert api.exists(report), "the report pages read the verifier's files"
    _denied(lambda: api.put_bytes(_key("reports"), b"forged"))
    _denied(lambda: api.head(_key("jobs")))


def test_the_worker_identity_reads_subjects_and_writes_checkpoints_state_and_reports(
    seaweedfs: Deployment, tmp_path: Path
) -> None:
    api, worker = seaweedfs.storage("api"), seaweedfs.storage("worker")
    subject = api.put_bytes(_key("subjects"), b"png")
    assert worker.get_to_file(subject.key, tmp_path / "image.png", subject.sha256).read_bytes() == b"png"
    archive = tmp_path / "model.tar"
    archive.write_bytes(os.urandom(6 * 1024 * 1024))
    worker.put_file(_key("checkpoints"), archive)  # in parts, as checkpoints go up
    state = worker.put_bytes(f"jobs/{uuid.uuid4()}/state/state.safetensors", b"state").key
    worker.delete(state)
    worker.put_bytes(f"reports/{uuid.uuid4()}/{uuid.uuid4()}/report.json", b"{}")
    _denied(lambda: worker.put_bytes(_key("subjects"), b"forged"))
    _denied(lambda: worker.delete(subject.key))


def test_the_beat_identity_sweeps_every_prefix(seaweedfs: Deployment) -> None:
    api, worker, beat = seaweedfs.storage("api"), seaweedfs.storage("worker"), seaweedfs.storage("beat")
    keys = [api.put_bytes(_key("subjects"), b"x").key, worker.put_bytes(_key("checkpoints"), b"x").key]
    beat.abort_stale_uploads(datetime.now(UTC))
    for key in keys:
        assert key in {o.key for o in beat.list_objects(key.split("/")[0] + "/")}
        beat.delete(key)
        assert not beat.exists(key)


def test_no_identity_can_create_buckets(seaweedfs: Deployment) -> None:
    for role in ("api", "worker", "beat"):
        client = seaweedfs.storage(role).client
        with pytest.raises(Exception, match="AccessDenied"):
            client.create_bucket(Bucket=f"other-{role}")


def test_the_store_refuses_writes_that_bypass_the_s3_gateway(seaweedfs: Deployment) -> None:
    """security.toml + the JWT keys: the filer and the volume servers accept only signed writes."""
    upload = urllib.request.Request(f"{seaweedfs.filer_url}/buckets/{BUCKET}/subjects/x", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(upload, timeout=10)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as unread:
        urllib.request.urlopen(f"{seaweedfs.filer_url}/buckets/{BUCKET}/", timeout=10)
    assert unread.value.code == 401
    with urllib.request.urlopen(f"{seaweedfs.master_url}/dir/assign", timeout=10) as response:
        assigned = json.load(response)
    write = urllib.request.Request(f"http://{assigned['url']}/{assigned['fid']}", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(write, timeout=10)
    assert refused.value.code == 401


def test_the_health_endpoint_the_compose_healthcheck_calls_needs_no_credentials(seaweedfs: Deployment) -> None:
    with urllib.request.urlopen(f"{seaweedfs.endpoint_url}/healthz", timeout=10) as response:
        assert response.status == 200
