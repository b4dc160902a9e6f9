"""Jobs written straight into the database, for the in-process tests of job execution, leases, recovery and the
sweep."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any

from PIL import Image

from common.db import SessionFactory
from common.keys import create_tenant
from common.models import BUILTIN_MODEL_ID, ProtectionJob, Subject, SubjectImage
from common.storage import Storage
from persguard_core.spec import ProtectionSpec, SubjectSpec, Training


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 7, 9)).save(buffer, format="PNG")
    return buffer.getvalue()


def queue_job(
    session_factory: SessionFactory,
    storage: Storage,
    *,
    steps: int = 6,
    every: int = 2,
    preset: str = "none",
    image: Callable[[int], bytes] = png,
    **columns: Any,
) -> uuid.UUID:
    """A queued job of one subject with three stored images (`image(position)` gives their bytes); its id."""
    with session_factory() as session:
        tenant = create_tenant(session, f"t-{uuid.uuid4().hex[:6]}")
        subject = Subject(tenant_id=tenant.id, name="rex", class_noun="dog")
        keys = []
        for position in range(3):
            obj = storage.put_bytes(f"subjects/{uuid.uuid4()}/{position}.png", image(position))
            keys.append(obj.key)
            subject.images.append(
                SubjectImage(
                    position=position,
                    storage_key=obj.key,
                    sha256=obj.sha256,
                    size_bytes=obj.size,
                    width=8,
                    height=8,
                    original_filename=f"{position}.png",
                )
            )
        session.add(subject)
        session.flush()
        spec = ProtectionSpec(
            subjects=[SubjectSpec(name=str(subject.id), class_noun="dog", images=keys)],
            training=Training(steps=steps, checkpoint_every=every),
        )
        job = ProtectionJob(
            tenant_id=tenant.id,
            base_model_id=BUILTIN_MODEL_ID,
            spec=spec.model_dump(mode="json"),
            verification_preset=preset,
            subjects=[subject],
            **columns,
        )
        session.add(job)
        session.commit()
        return job.id


def get_job(session_factory: SessionFactory, job_id: uuid.UUID) -> ProtectionJob:
    with session_factory() as session:
        return session.get_one(ProtectionJob, job_id)
