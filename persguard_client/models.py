"""Typed views of the API's answers. Each keeps the whole JSON in `raw` and reads optional fields tolerantly, so
that a server newer or older than the client (fields added or absent) still works."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Subject:
    """A registered subject."""

    id: str
    name: str
    class_noun: str
    image_count: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Subject:
        """From `GET /v1/subjects/{id}`'s body."""
        return cls(str(body["id"]), body["name"], body["class_noun"], len(body.get("images") or []), body)


@dataclass(frozen=True)
class Job:
    """A protection job. `phase` ("protecting", "verifying" or None) and `eta_seconds` are None when the server
    does not report them."""

    id: str
    status: str
    step: int
    total_steps: int
    progress: float
    error: str | None
    checkpoint_id: str | None
    verification: str
    phase: str | None
    eta_seconds: float | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled)."""
        return self.status in FINISHED

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Job:
        """From `GET /v1/jobs/{id}`'s body."""
        checkpoint = body.get("checkpoint_id")
        eta = body.get("eta_seconds")
        return cls(
            id=str(body["id"]),
            status=body["status"],
            step=int(body.get("step") or 0),
            total_steps=int(body.get("total_steps") or 0),
            progress=float(body.get("progress") or 0.0),
            error=body.get("error"),
            checkpoint_id=str(checkpoint) if checkpoint else None,
            verification=body.get("verification") or "none",
            phase=body.get("phase"),
            eta_seconds=float(eta) if isinstance(eta, int | float) else None,
            raw=body,
        )


@dataclass(frozen=True)
class Checkpoint:
    """A protected checkpoint: its archive's sha256 and size, and its latest verification (None while pending or
    when none was asked for)."""

    id: str
    sha256: str
    size_bytes: int
    verification: dict[str, Any] | None
    download_path: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Checkpoint:
        """From `GET /v1/checkpoints/{id}`'s body."""
        links = body.get("links") or {}
        return cls(
            id=str(body["id"]),
            sha256=body["sha256"],
            size_bytes=int(body.get("size_bytes") or 0),
            verification=body.get("verification"),
            download_path=links.get("download") or f"/v1/checkpoints/{body['id']}/download",
            raw=body,
        )
