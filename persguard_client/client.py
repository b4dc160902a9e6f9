"""`PersGuardClient`: the PersGuard HTTP API from Python.

    with PersGuardClient("https://api.example.com", api_key) as client:
        subject = client.create_subject_from_folder("photos/", class_noun="dog")
        job = client.protect([subject.id], profile="fast", verification="none")
        job = client.wait_for_job(job.id)
        client.download_checkpoint(job.checkpoint_id, Path("model.tar"))

Every error answer raises the `ApiError` subclass of its status with the server's problem detail; 429 and 503
answers (and connection failures where a retry is safe) are retried as `RetryPolicy` says. The API key is sent only
to the API, never to a download URL, and never appears in the client's repr or errors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from persguard_client.download import write_verified
from persguard_client.errors import (
    ApiError,
    ConfigurationError,
    JobFailed,
    PersGuardError,
    RateLimited,
    WaitTimeout,
    error_class,
)
from persguard_client.models import Checkpoint, Job, Subject
from persguard_client.protection import protection_body
from persguard_client.retry import RetryPolicy, retry_after_s

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CHUNK_BYTES = 1 << 20


def mask_key(key: str) -> str:
    """A key as it may be shown: its public prefix only (`pgk_<prefix>_…`)."""
    parts = key.split("_")
    return f"pgk_{parts[1]}_…" if len(parts) >= 3 and parts[0] == "pgk" else "…"


def folder_images(folder: Path) -> list[Path]:
    """The image files (PNG, JPEG, WebP by suffix) directly in `folder`, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PersGuardError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PersGuardError(f"no images (.png, .jpg, .jpeg, .webp) in {folder}")
    return files


def _problem(response: httpx.Response) -> ApiError:
    """The exception of an error answer, with its problem+json detail (or the start of a non-JSON body)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    problem = body if isinstance(body, dict) else {}
    detail = problem.get("detail") or response.text[:300].strip() or response.reason_phrase
    kind = str(problem.get("type") or "").rsplit("/", 1)[-1]
    cls = error_class(response.status_code)
    if cls is RateLimited:
        return RateLimited(
            response.status_code, str(detail), kind=kind, problem=problem, retry_after_s=retry_after_s(response)
        )
    return cls(response.status_code, str(detail), kind=kind, problem=problem)


class PersGuardClient:
    """A client of one PersGuard API at `base_url` with one API key. `http` replaces the underlying httpx client
    (tests pass one bound to the app); `sleep` and `clock` replace time.sleep / time.monotonic."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_url:
            raise ConfigurationError("no API URL: pass --url or set PERSGUARD_URL")
        if not api_key:
            raise ConfigurationError("no API key: pass --key or set PERSGUARD_API_KEY")
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.retry = retry or RetryPolicy()
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._sleep, self._clock = sleep, clock

    def __repr__(self) -> str:
        return f"PersGuardClient({self.base_url!r}, key={mask_key(self._key)!r})"

    def __enter__(self) -> PersGuardClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (only those of an httpx client this object made)."""
        if self._owns_http:
            self._http.close()

    # -- transport ------------------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def _send(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        """One request with retries; an error answer raises its ApiError. A connection failure is retried when
        nothing was sent (connection refused), or for safe methods and requests with an Idempotency-Key."""
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            headers["Authorization"] = f"Bearer {self._key}"
        url = self._url(path)
        attempt = 1
        while True:
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                replayable = method in SAFE_METHODS or "Idempotency-Key" in headers
                delay = self.retry.delay(attempt, None) if replayable or isinstance(exc, httpx.ConnectError) else None
                if delay is None:
                    raise PersGuardError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from None
            else:
                if response.status_code < 400:
                    return response
                delay = self.retry.delay(attempt, response)
                if delay is None:
                    raise _problem(response)
            self._sleep(delay)
            attempt += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._send(method, path, **kwargs).json()

    # -- service --------------------------------------------------------------------------------------------
    def ready(self) -> dict[str, Any]:
        """`GET /readyz`: the service, its database, broker and storage are reachable (an ApiError otherwise)."""
        return self._json("GET", "/readyz", auth=False)

    def models(self) -> list[dict[str, Any]]:
        """`GET /v1/models`: the base models a protection may name."""
        return self._json("GET", "/v1/models")["items"]

    # -- subjects -------------------------------------------------------------------------------------------
    def create_subject(
        self,
        name: str,
        class_noun: str,
        images: Sequence[tuple[str, bytes]],
        *,
        idempotency_key: str | None = None,
    ) -> Subject:
        """Register a subject from (file name, bytes) pairs (3-20 PNG, JPEG or WebP images). An Idempotency-Key (a
        fresh one unless given) makes retries safe: a replay returns the same subject."""
        files = [
            ("images", (filename, data, CONTENT_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream")))
            for filename, data in images
        ]
        body = self._json(
            "POST",
            "/v1/subjects",
            data={"name": name, "class_noun": class_noun},
            files=files,
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
        )
        return Subject.from_json(body)

    def create_subject_from_folder(self, folder: Path, class_noun: str, name: str | None = None) -> Subject:
        """Register a subject from the images directly in `folder` (named after the folder unless `name`)."""
        images = [(path.name, path.read_bytes()) for path in folder_images(folder)]
        return self.create_subject(name or Path(folder).resolve().name, class_noun, images)

    def get_subject(self, subject_id: str) -> Subject:
        """`GET /v1/subjects/{id}`."""
        return Subject.from_json(self._json("GET", f"/v1/subjects/{subject_id}"))

    def delete_subject(self, subject_id: str) -> None:
        """`DELETE /v1/subjects/{id}`: its images are removed, queued jobs that use it cancelled."""
        self._send("DELETE", f"/v1/subjects/{subject_id}")

    # -- protections and jobs -------------------------------------------------------------------------------
    def protect(
        self,
        subjects: Sequence[str | tuple[str, dict[str, Any]]],
        *,
        behaviour: dict[str, Any] | None = None,
        carrier: str | None = None,
        verification: str | None = None,
        profile: str | None = None,
        steps: int | None = None,
        base_model: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """`POST /v1/protections` (see `protection_body`); returns the queued job. An Idempotency-Key (a fresh one
        unless given) makes retries safe: a replay returns the same job."""
        body = protection_body(
            subjects,
            behaviour=behaviour,
            carrier=carrier,
            verification=verification,
            profile=profile,
            steps=steps,
            base_model=base_model,
        )
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return Job.from_json(self._json("POST", "/v1/protections", json=body, headers=headers))

    def get_job(self, job_id: str) -> Job:
        """`GET /v1/jobs/{id}`."""
        return Job.from_json(self._json("GET", f"/v1/jobs/{job_id}"))

    def cancel_job(self, job_id: str) -> Job:
        """`POST /v1/jobs/{id}/cancel`."""
        return Job.from_json(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def wait_for_job(
        self,
        job_id: str,
        *,
        on_update: Callable[[Job], None] | None = None,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        verified: bool = False,
    ) -> Job:
        """Poll the job until it ends, calling `on_update` with each state; with `verified`, a succeeded job whose
        verification is not `none` is followed until its checkpoint's report exists. JobFailed when the job ends
        failed or cancelled, WaitTimeout after `timeout_s`."""
        deadline = None if timeout_s is None else self._clock() + timeout_s
        while True:
            job = self.get_job(job_id)
            if on_update is not None:
                on_update(job)
            if job.status in ("failed", "cancelled"):
                raise JobFailed(job)
            if job.status == "succeeded" and (not verified or not self._verification_pending(job)):
                return job
            if deadline is not None and self._clock() >= deadline:
                raise WaitTimeout(f"job {job_id} is still {job.status} ({job.phase or 'no phase'}) after {timeout_s} s")
            self._sleep(poll_s)

    def _verification_pending(self, job: Job) -> bool:
        if job.verification == "none" or job.checkpoint_id is None:
            return False
        return self.get_checkpoint(job.checkpoint_id).verification is None

    # -- checkpoints ----------------------------------------------------------------------------------------
    def get_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """`GET /v1/checkpoints/{id}`: sha256, size, manifest and latest verification."""
        return Checkpoint.from_json(self._json("GET", f"/v1/checkpoints/{checkpoint_id}"))

    def download_checkpoint(
        self, checkpoint_id: str, dest: Path, *, on_bytes: Callable[[int], None] | None = None
    ) -> Path:
        """Download the checkpoint's archive to `dest`, keeping it only if its sha256 is the one the API
        publishes (ChecksumMismatch otherwise, with nothing left at `dest`). The download link is fetched
        without the API key (it is a presigned URL, possibly on another host)."""
        checkpoint = self.get_checkpoint(checkpoint_id)
        attempt = 1
        while True:
            location = self._send("GET", checkpoint.download_path).headers.get("location")
            if not location:
                raise PersGuardError(f"checkpoint {checkpoint_id}: the download answer names no location")
            try:
                with self._http.stream("GET", self._url(location)) as response:
                    if response.status_code < 400:
                        chunks = response.iter_bytes(CHUNK_BYTES)
                        return write_verified(chunks, Path(dest), checkpoint.sha256, on_bytes)
                    response.read()
                    delay = self.retry.delay(attempt, response)
                    if delay is None:
                        raise _problem(response)
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt, None)
                if delay is None:
                    raise PersGuardError(f"download of checkpoint {checkpoint_id} failed: {exc}") from None
            self._sleep(delay)
            attempt += 1
