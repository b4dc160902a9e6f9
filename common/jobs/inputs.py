"""Turning a stored job into local files: subject images from storage, and the base model (cached per process)."""

from __future__ import annotations

import logging
import shutil
import tarfile
import threading
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.jobs.errors import JobInputError
from common.models import BaseModelEntry, Checkpoint, SubjectImage
from common.storage import ChecksumMismatch, ObjectNotFound, Storage, sha256_file
from persguard_core.spec import ProtectionSpec

log = logging.getLogger(__name__)
_model_lock = threading.Lock()


def resolve_inputs(session: Session, storage: Storage, spec: ProtectionSpec, dest: Path) -> ProtectionSpec:
    """The spec with every subject image key replaced by a verified local copy.

    A missing or corrupt image fails the job (JobInputError); an unreachable storage raises StorageError,
    which the caller treats as transient.
    """
    keys = [key for subject in spec.subjects for key in subject.images]
    recorded = dict(
        session.execute(
            select(SubjectImage.storage_key, SubjectImage.sha256).where(SubjectImage.storage_key.in_(keys))
        ).all()
    )
    subjects = []
    for index, subject in enumerate(spec.subjects):
        paths = []
        for position, key in enumerate(subject.images):
            if key not in recorded:
                raise JobInputError(f"image {key} of subject {subject.name} is gone (was the subject deleted?)")
            target = dest / str(index) / f"{position:02d}.png"
            if target.exists() and sha256_file(target) == recorded[key]:  # kept from an earlier attempt
                paths.append(str(target))
                continue
            try:
                storage.get_to_file(key, target, expected_sha256=recorded[key])
            except (ObjectNotFound, ChecksumMismatch) as exc:
                log.warning("image %s of subject %s: %s", key, subject.name, exc)
                raise JobInputError(
                    f"cannot read image {key} of subject {subject.name}: it is missing from storage or does not "
                    "match its recorded sha256"
                ) from exc
            paths.append(str(target))
        subjects.append({**subject.model_dump(), "images": paths})
    return ProtectionSpec.model_validate({**spec.model_dump(), "subjects": subjects})


def extract_archive(archive: Path, dest: Path) -> Path:
    """Unpack a checkpoint tar into `dest` (members may not leave it)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def resolve_base_model(
    session: Session, storage: Storage, spec: ProtectionSpec, base_model_id: uuid.UUID | None, cache_dir: Path
) -> ProtectionSpec:
    """The spec with a base model registered from a stored checkpoint replaced by a local copy.

    The copy is downloaded once per machine into `cache_dir/models/<checkpoint id>` and reused by later jobs;
    "builtin" and local paths are left as they are.
    """
    entry = session.get(BaseModelEntry, base_model_id) if base_model_id else None
    if entry is None or entry.checkpoint_id is None or Path(spec.base_model).exists() or spec.base_model == "builtin":
        return spec
    checkpoint = session.get(Checkpoint, entry.checkpoint_id)
    if checkpoint is None:
        raise JobInputError(f"base model {entry.name!r} refers to checkpoint {entry.checkpoint_id}, which is gone")
    target = cache_dir / "models" / str(checkpoint.id)
    with _model_lock:
        if not (target / "model_index.json").exists():
            staging = cache_dir / "models" / f".{checkpoint.id}.{uuid.uuid4().hex[:8]}"
            archive = staging.with_suffix(".tar")
            try:
                storage.get_to_file(checkpoint.storage_key, archive, expected_sha256=checkpoint.sha256)
                extract_archive(archive, staging)
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
            finally:
                archive.unlink(missing_ok=True)
                shutil.rmtree(staging, ignore_errors=True)
            log.info("cached base model %s from checkpoint %s at %s", entry.name, checkpoint.id, target)
    return spec.model_copy(update={"base_model": str(target)})
