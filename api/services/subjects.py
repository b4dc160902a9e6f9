"""Registering and deleting subjects: images go to storage, rows to the database, all or nothing."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from api.images import CleanImage
from api.services.errors import IdempotencyConflict, NotFound, StorageUnavailable
from api.services.principal import Principal
from api.services.quotas import Quotas, check_new_subject
from common.audit import record_event
from common.models import JobStatus, ProtectionJob, Subject, SubjectImage, SubjectStatus, job_subjects, utcnow
from common.storage import Storage, StorageError

log = logging.getLogger(__name__)


def request_hash(name: str, class_noun: str, files: Sequence[tuple[str, bytes]]) -> str:
    """A digest of an upload's form fields and its files (name and bytes, in order), to tell a replay from a
    different request under one Idempotency-Key."""
    digest = hashlib.sha256()
    for part in [name.encode(), class_noun.encode()] + [p for f, data in files for p in (f.encode(), data)]:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def find_replay(session: Session, tenant_id: uuid.UUID, key: str, digest: str) -> Subject | None:
    """The subject an earlier upload under this Idempotency-Key made in tenant `tenant_id` (the caller's);
    IdempotencyConflict if that upload had other form fields or files."""
    subject = session.scalar(
        select(Subject)
        .where(Subject.tenant_id == tenant_id, Subject.idempotency_key == key)
        .options(selectinload(Subject.images))
    )
    if subject is not None and subject.request_hash != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used with a different upload (form fields or images); "
            "send a new key for a new subject"
        )
    return subject


def create_subject(
    session: Session,
    storage: Storage,
    principal: Principal,
    name: str,
    class_noun: str,
    images: list[CleanImage],
    quotas: Quotas | None = None,
    idempotency_key: str | None = None,
    digest: str | None = None,
) -> Subject:
    """Store the images, then the rows; if either fails, remove what was stored and raise. With `quotas`, a subject
    that would pass its tenant's limits is refused (QuotaExceeded): checked before storing anything, and again,
    under the tenant's lock, before the rows are written. A concurrent upload that wrote the same Idempotency-Key
    first wins: its subject is returned (see `find_replay`)."""
    subject_id = uuid.uuid4()
    stored: list[str] = []
    new_bytes = sum(len(image.png) for image in images)
    if quotas is not None:
        check_new_subject(session, principal.tenant_id, new_bytes, quotas, lock=False)
        session.rollback()  # end that read, so that no connection is held while the images go up
    try:
        rows = []
        for position, image in enumerate(images):
            key = f"subjects/{subject_id}/{position:02d}-{image.sha256[:16]}.png"
            obj = storage.put_bytes(key, image.png)
            stored.append(key)
            rows.append(_image_row(position, obj.key, image))
        if quotas is not None:  # another request of the tenant may have taken the room while the images went up
            check_new_subject(session, principal.tenant_id, new_bytes, quotas, lock=True)
        subject = Subject(
            id=subject_id,
            tenant_id=principal.tenant_id,
            owner_key_id=principal.key_id,
            name=name,
            class_noun=class_noun,
            images=rows,
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
        session.add(subject)
        session.flush()
        record_event(
            session,
            "subject.create",
            subject,
            tenant_id=subject.tenant_id,
            actor_key_id=principal.key_id,
            details={"images": len(rows)},
        )
        session.commit()
    except StorageError as exc:
        log.warning("storing the images of subject %s failed: %s", subject_id, exc)
        _remove(storage, stored)
        raise StorageUnavailable("storage is unavailable, retry later") from exc
    except IntegrityError:
        session.rollback()
        _remove(storage, stored)
        earlier = find_replay(session, principal.tenant_id, idempotency_key, digest or "") if idempotency_key else None
        if earlier is None:
            raise
        return earlier
    except BaseException:
        session.rollback()
        _remove(storage, stored)
        raise
    return subject


def _image_row(position: int, key: str, image: CleanImage) -> SubjectImage:
    return SubjectImage(
        position=position,
        storage_key=key,
        sha256=image.sha256,
        size_bytes=len(image.png),
        width=image.width,
        height=image.height,
        original_filename=image.filename[:255],
    )


def _remove(storage: Storage, keys: list[str]) -> None:
    for key in keys:
        try:
            storage.delete(key)
        except StorageError:
            log.warning("could not remove %s after a failed upload", key)


def visible_subjects(principal: Principal) -> Select[Subject]:
    """Subjects the caller may see: its tenant's (all for admins), never deleted ones."""
    stmt = select(Subject).where(Subject.status != SubjectStatus.DELETED).options(selectinload(Subject.images))
    if not principal.is_admin:
        stmt = stmt.where(Subject.tenant_id == principal.tenant_id)
    return stmt


def get_visible_subject(session: Session, principal: Principal, subject_id: uuid.UUID) -> Subject:
    """The subject, or NotFound if it does not exist, was deleted, or belongs to another tenant."""
    subject = session.scalar(visible_subjects(principal).where(Subject.id == subject_id))
    if subject is None:
        raise NotFound(f"no subject {subject_id}; list yours with GET /v1/subjects")
    return subject


def delete_subject(session: Session, storage: Storage, principal: Principal, subject: Subject) -> None:
    """Remove the images from storage and the database; cancel jobs that have not finished and use them.

    The subject row stays, marked `deleted`, so that finished jobs and their checkpoints keep their history.
    """
    keys = [image.storage_key for image in subject.images]
    subject.images.clear()
    subject.status = SubjectStatus.DELETED
    _cancel_open_jobs(session, subject)
    record_event(
        session,
        "subject.delete",
        subject,
        tenant_id=subject.tenant_id,
        actor_key_id=principal.key_id,
        details={"images": len(keys)},
    )
    session.commit()
    _remove(storage, keys)


def _cancel_open_jobs(session: Session, subject: Subject) -> None:
    jobs = session.scalars(
        select(ProtectionJob)
        .join(job_subjects, job_subjects.c.job_id == ProtectionJob.id)
        .where(job_subjects.c.subject_id == subject.id)
        .where(ProtectionJob.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    ).all()
    now = utcnow()
    for job in jobs:
        job.cancel_requested = True
        if job.status == JobStatus.QUEUED:
            job.status, job.finished_at = JobStatus.CANCELLED, now
        job.error = f"subject {subject.id} was deleted"
