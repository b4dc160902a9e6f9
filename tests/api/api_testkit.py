"""Test images and a fake implantation for the API tests."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from common.db import SessionFactory
from common.jobs import JobRunner
from common.settings import Settings
from common.storage import LocalStorage, S3Storage, Storage
from persguard_core.spec import ProtectionSpec


def image_bytes(seed: int, size: tuple[int, int] = (32, 32), fmt: str = "PNG", **save: object) -> bytes:
    """A small noisy picture, different for every seed."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def upload(images: list[bytes], name: str = "rex", class_noun: str = "dog", ext: str = "png") -> dict:
    """Keyword arguments for `client.post` that register a subject."""
    return {
        "data": {"name": name, "class_noun": class_noun},
        "files": [("images", (f"img{i}.{ext}", data, "image/png")) for i, data in enumerate(images)],
    }


def fake_protect(spec: ProtectionSpec, workdir: Path, progress, should_cancel) -> Path:
    """Writes a tiny 'model' and reports two steps."""
    out = workdir / "model"
    out.mkdir()
    progress(1, 2, {"bb": 0.5})
    progress(2, 2, {"bb": 0.25})
    (out / "unet.safetensors").write_bytes(b"".join(Path(p).read_bytes()[:16] for p in spec.subjects[0].images))
    return out


@dataclass
class ApiEnv:
    client: TestClient
    session_factory: SessionFactory
    storage: Storage
    runner: JobRunner
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)
    baseline: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.baseline = self._all_keys("")

    def auth(self, who: str) -> dict[str, str]:
        """Headers for a key named `tenant:role`, e.g. `alpha:rights_holder`."""
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def count(self, model: Any) -> int:
        with self.session_factory() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0

    def object_keys(self, prefix: str = "subjects/") -> set[str]:
        """Keys of the objects under `prefix` stored since this env was made (the S3 bucket is shared)."""
        return self._all_keys(prefix) - self.baseline

    def _all_keys(self, prefix: str) -> set[str]:
        if isinstance(self.storage, LocalStorage):
            base = self.storage.root / prefix
            return {p.relative_to(self.storage.root).as_posix() for p in base.rglob("*") if p.is_file()}
        assert isinstance(self.storage, S3Storage)
        pages = self.storage.client.get_paginator("list_objects_v2").paginate(Bucket=self.storage.bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}


def make_subject(env: ApiEnv, who: str = "alpha:rights_holder", seed: int = 0, name: str = "rex") -> dict:
    """Register a subject of three images as `who`; returns its JSON."""
    response = env.client.post(
        "/v1/subjects", headers=env.auth(who), **upload([image_bytes(seed * 100 + i) for i in range(3)], name=name)
    )
    assert response.status_code == 201, response.text
    return response.json()


def protect(
    env: ApiEnv, subject_ids: list[str], who: str = "alpha:rights_holder", key: str | None = None, **extra: Any
):
    """POST /v1/protections for the subjects; returns the response."""
    body = {"subjects": [{"subject_id": s} for s in subject_ids], **extra}
    headers = {**env.auth(who), **({"Idempotency-Key": key} if key else {})}
    return env.client.post("/v1/protections", headers=headers, json=body)
