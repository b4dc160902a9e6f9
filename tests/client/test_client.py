"""PersGuardClient against the real app: subjects from a folder, errors with the server's problem detail,
retries on 429 / 503, downloads that keep nothing unless the sha256 is the API's, and a key that never shows."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from persguard_client import (
    ChecksumMismatch,
    Forbidden,
    InvalidRequest,
    NotFound,
    PersGuardClient,
    PersGuardError,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    Unauthorized,
    behaviour,
)
from persguard_client.archive import extract
from tests.api.api_testkit import image_bytes


def _photos(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"view{i}.png").write_bytes(image_bytes(i))
    return folder


def _succeeded_job(service, tmp_path: Path):
    client = service.client()
    subject = client.create_subject_from_folder(_photos(tmp_path / "rex"), "dog")
    job = client.protect([subject.id], profile="fast", verification="none")
    return client, client.wait_for_job(job.id, poll_s=0.05, timeout_s=30)


def test_a_subject_is_registered_from_the_images_in_a_folder(service, tmp_path):
    folder = _photos(tmp_path / "rex", 4)
    (folder / "notes.txt").write_text("not an image")
    (folder / "more").mkdir()
    client = service.client()

    subject = client.create_subject_from_folder(folder, "dog")

    assert (subject.name, subject.class_noun, subject.image_count) == ("rex", "dog", 4)
    stored = client.get_subject(subject.id)
    assert [image["original_filename"] for image in stored.raw["images"]] == [f"view{i}.png" for i in range(4)]


def test_a_folder_without_images_is_refused_before_any_request(service, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PersGuardError, match="no images"):
        service.client().create_subject_from_folder(tmp_path / "empty", "dog")


def test_error_answers_raise_their_exception_with_the_servers_detail(service, tmp_path):
    client = service.client()
    missing = uuid.uuid4()

    with pytest.raises(NotFound) as not_found:
        client.get_job(str(missing))
    assert not_found.value.status == 404 and not_found.value.kind == "not-found"
    assert str(missing) in not_found.value.detail

    with pytest.raises(InvalidRequest) as unknown:
        client.protect([str(missing)])
    assert unknown.value.status == 422 and "unknown subject ids" in unknown.value.detail

    subject = client.create_subject_from_folder(_photos(tmp_path / "rex"), "dog")
    with pytest.raises(InvalidRequest) as invalid:
        client.protect([subject.id], behaviour=behaviour("target"))
    assert "target_prompt" in invalid.value.detail and invalid.value.problem["errors"]

    with pytest.raises(Forbidden) as forbidden:
        service.client("model_host").protect([subject.id])
    assert forbidden.value.status == 403 and forbidden.value.detail

    with pytest.raises(Unauthorized):
        PersGuardClient("http://testserver", "pgk_nothere_secret", http=service.http).get_job(str(missing))


def test_a_rate_limited_request_is_sent_again_after_retry_after(make_service):
    service = make_service(rate_limit_per_s=1, rate_limit_burst=1)
    client = service.client()

    assert client.models()  # takes the only token
    assert [m["name"] for m in client.models()] == ["builtin"]  # 429, Retry-After: 1, then served

    assert service.sleeps == [1.0]


def test_a_rate_limit_beyond_the_retries_raises_with_retry_after(make_service):
    service = make_service(rate_limit_per_s=1, rate_limit_burst=1)
    client = service.client(retry=RetryPolicy(attempts=1))
    client.models()

    with pytest.raises(RateLimited) as limited:
        client.models()
    assert limited.value.retry_after_s == 1.0 and limited.value.kind == "rate-limited"
    assert service.sleeps == []


def _scripted(*answers: httpx.Response) -> tuple[PersGuardClient, list[float], list[httpx.Request]]:
    queue, sent, sleeps = list(answers), [], []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return queue.pop(0)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    retry = RetryPolicy(attempts=3, backoff_s=0.5, max_retry_after_s=60)
    return PersGuardClient("http://api", "pgk_abc_secret", http=http, sleep=sleeps.append, retry=retry), sleeps, sent


def _problem(status: int, detail: str, **headers: str) -> httpx.Response:
    body = {"type": "https://persguard.dev/problems/x", "title": "t", "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers=headers)


def test_unavailable_answers_are_retried_with_backoff_then_raised():
    client, sleeps, sent = _scripted(
        _problem(503, "storage is unavailable, retry later"),
        _problem(503, "storage is unavailable, retry later"),
        _problem(503, "storage is unavailable, retry later"),
    )
    with pytest.raises(ServiceUnavailable, match="storage is unavailable, retry later"):
        client.ready()
    assert sleeps == [0.5, 1.0] and len(sent) == 3


def test_a_retry_after_longer_than_the_policy_allows_is_not_waited_for():
    client, sleeps, _ = _scripted(_problem(429, "the tenant has 10 subjects", **{"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as limited:
        client.models()
    assert sleeps == [] and limited.value.retry_after_s == 3600.0


def test_protect_sends_one_idempotency_key_on_every_attempt():
    job = {"id": str(uuid.uuid4()), "status": "queued", "step": 0, "total_steps": 100}
    client, _, sent = _scripted(_problem(503, "database unavailable"), httpx.Response(202, json=job))
    assert client.protect([str(uuid.uuid4())]).status == "queued"
    keys = {request.headers["idempotency-key"] for request in sent}
    assert len(sent) == 2 and len(keys) == 1


def test_create_subject_sends_one_idempotency_key_on_every_attempt():
    subject = {"id": str(uuid.uuid4()), "name": "rex", "class_noun": "dog", "images": []}
    client, _, sent = _scripted(_problem(503, "storage is unavailable, retry later"), httpx.Response(201, json=subject))
    assert client.create_subject("rex", "dog", [("a.png", b"x")]).id == subject["id"]
    keys = {request.headers["idempotency-key"] for request in sent}
    assert len(sent) == 2 and len(keys) == 1


def test_an_upload_whose_answer_is_lost_is_retried_with_its_key_and_makes_one_subject(service, tmp_path):
    """The first attempt commits but its answer never arrives (as when the API is killed before answering): the
    client retries with the same Idempotency-Key and gets the first subject back."""
    sent: list[httpx.Request] = []

    def lose_the_first_answer(response: httpx.Response) -> None:
        sent.append(response.request)
        if len(sent) == 1:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=response.request)

    service.http.event_hooks["response"].append(lose_the_first_answer)
    client = service.client()
    subject = client.create_subject_from_folder(_photos(tmp_path / "rex"), "dog")
    assert len(sent) == 2 and len({request.headers["idempotency-key"] for request in sent}) == 1
    assert [item["id"] for item in client._json("GET", "/v1/subjects")["items"]] == [subject.id]


def test_a_checkpoint_is_downloaded_with_its_sha256_and_the_link_gets_no_key(service, tmp_path):
    sent: list[httpx.Request] = []
    service.http.event_hooks["request"].append(sent.append)
    client, job = _succeeded_job(service, tmp_path)
    checkpoint = client.get_checkpoint(job.checkpoint_id)

    path = client.download_checkpoint(job.checkpoint_id, tmp_path / "out" / "model.tar")

    assert hashlib.sha256(path.read_bytes()).hexdigest() == checkpoint.sha256
    assert (extract(path, tmp_path / "model") / "unet.safetensors").is_file()
    link = [request for request in sent if request.url.path == "/v1/files"]
    assert len(link) == 1 and "authorization" not in link[0].headers


def test_a_download_whose_sha256_differs_is_refused_and_leaves_no_file(service, tmp_path):
    client, job = _succeeded_job(service, tmp_path)
    stored = service.storage.path_of(f"checkpoints/{job.checkpoint_id}/model.tar")
    stored.write_bytes(stored.read_bytes() + b"tampered")
    out = tmp_path / "out"

    with pytest.raises(ChecksumMismatch) as mismatch:
        client.download_checkpoint(job.checkpoint_id, out / "model.tar")

    assert mismatch.value.expected == client.get_checkpoint(job.checkpoint_id).sha256
    assert list(out.iterdir()) == []


def test_the_key_is_not_in_the_clients_repr_or_its_errors(service):
    key = service.keys["rights_holder"]
    client = service.client()
    with pytest.raises(NotFound) as error:
        client.get_job(str(uuid.uuid4()))
    assert key not in repr(client) and key.split("_")[2] not in repr(client)
    assert key not in str(error.value) and key not in repr(error.value.problem)


def test_a_refused_connection_is_retried_then_reported():
    from scripts.seaweedfs_mini import free_ports

    sleeps: list[float] = []
    retry = RetryPolicy(attempts=3, backoff_s=0.01)
    client = PersGuardClient(f"http://127.0.0.1:{free_ports(1)[0]}", "pgk_abc_secret", retry=retry, sleep=sleeps.append)
    with pytest.raises(PersGuardError, match="ConnectError"):
        client.create_subject("rex", "dog", [("a.png", b"x")])
    assert sleeps == [0.01, 0.02]
