"""Creating, finding, cancelling and retrying protection jobs."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import Connection, Row, Select, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload

from api.schemas.jobs import BehaviourIn, JobLinks, JobOut, ProtectionCreate
from api.services.errors import (
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    NotFound,
    PermissionDenied,
    UnknownModel,
    UnknownSubject,
)
from api.services.principal import Principal
from api.services.profiles import PROFILES
from api.services.quotas import Quotas, check_active_jobs
from common.audit import record_event
from common.models import (
    BaseModelEntry,
    Checkpoint,
    JobPhase,
    JobStatus,
    ProtectionJob,
    Subject,
    SubjectStatus,
    job_subjects,
    utcnow,
)
from persguard_core.spec import ErasureBehaviour, Knowledge, PatternBehaviour, ProtectionSpec, TargetBehaviour


def request_hash(body: ProtectionCreate) -> str:
    """A stable hash of the request body, to tell a replay from a different request under one key."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_tenant(session: Session, principal: Principal, body: ProtectionCreate) -> uuid.UUID | None:
    """The tenant an Idempotency-Key of this request is kept under: the job's, which is its subjects' tenant. For a
    rights holder that is their own; for an admin, the tenant of the subjects named (deleted ones too, so that a
    replay still finds its job); None when they name no stored subject or several tenants' (no job can exist)."""
    if not principal.is_admin:
        return principal.tenant_id
    ids = [item.subject_id for item in body.subjects]
    tenants = set(session.scalars(select(Subject.tenant_id).where(Subject.id.in_(ids)).distinct()))
    return tenants.pop() if len(tenants) == 1 else None


def find_replay(session: Session, tenant_id: uuid.UUID | None, key: str, digest: str) -> ProtectionJob | None:
    """The job created earlier under this Idempotency-Key in tenant `tenant_id` (see `idempotency_tenant`);
    IdempotencyConflict if that request had another body."""
    if tenant_id is None:
        return None
    job = session.scalar(
        select(ProtectionJob).where(ProtectionJob.idempotency_key == key, ProtectionJob.tenant_id == tenant_id)
    )
    if job is not None and job.request_hash != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used with a different request body; send a new key for a new request"
        )
    return job


def _load_subjects(session: Session, principal: Principal, body: ProtectionCreate) -> list[Subject]:
    ids = [item.subject_id for item in body.subjects]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("each subject may appear once in a protection")
    stmt = select(Subject).where(Subject.id.in_(ids), Subject.status != SubjectStatus.DELETED)
    if not principal.is_admin:
        stmt = stmt.where(Subject.tenant_id == principal.tenant_id)
    found = {s.id: s for s in session.scalars(stmt.options(selectinload(Subject.images)))}
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise UnknownSubject(f"unknown subject ids: {', '.join(missing)}; register them with POST /v1/subjects")
    subjects = [found[i] for i in ids]
    if len({s.tenant_id for s in subjects}) > 1:
        raise InvalidRequest("the subjects of one protection must belong to one tenant")
    return subjects


def _base_model(session: Session, name: str) -> BaseModelEntry:
    entry = session.scalar(select(BaseModelEntry).where(BaseModelEntry.name == name))
    if entry is None:
        raise UnknownModel(f"unknown base model {name!r}; GET /v1/models lists the registered ones")
    return entry


def check_may_request(principal: Principal, body: ProtectionCreate) -> None:
    """Only admin keys may set the internal settings (`advanced`)."""
    if body.advanced is not None and not principal.is_admin:
        raise PermissionDenied(
            "`advanced` is accepted from admin keys only; leave it out, and choose a `profile` "
            "(fast, default, thorough) or set `steps`"
        )


_BEHAVIOURS: dict[str, type[PatternBehaviour | ErasureBehaviour | TargetBehaviour]] = {
    "pattern": PatternBehaviour,
    "erasure": ErasureBehaviour,
    "target": TargetBehaviour,
}


def _behaviour(choice: BehaviourIn) -> PatternBehaviour | ErasureBehaviour | TargetBehaviour:
    return _BEHAVIOURS[choice.kind].model_validate(choice.model_dump())


def build_spec(body: ProtectionCreate, subjects: list[Subject], base: BaseModelEntry) -> ProtectionSpec:
    """The core's job spec of a request: its profile's settings, then its `steps`, then an admin's `advanced`
    fields over them. Subject images are storage keys, subject names their ids (unique by construction)."""
    profile = PROFILES[body.profile]
    training, encoder = profile.training.model_dump(), profile.encoder.model_dump()
    per_subject = body.steps if body.steps is not None else profile.encoder_steps_per_subject
    if body.steps is not None:
        training["steps"] = body.steps
    if per_subject is not None:
        encoder["steps"] = per_subject * len(subjects)
    sections: dict[str, dict[str, Any]] = {
        "knowledge": Knowledge().model_dump(),
        "losses": profile.losses.model_dump(),
        "training": training,
        "encoder": encoder,
    }
    overrides: dict[str, dict[str, Any]] = body.advanced.model_dump(exclude_none=True) if body.advanced else {}
    for name, fields in overrides.items():
        sections[name] = {**sections[name], **fields}
    try:
        return ProtectionSpec.model_validate(
            {
                "base_model": base.source,
                "subjects": [
                    {
                        "name": str(subject.id),
                        "class_noun": subject.class_noun,
                        "images": [image.storage_key for image in subject.images],
                        "behaviour": _behaviour(item.behaviour),
                    }
                    for subject, item in zip(subjects, body.subjects, strict=True)
                ],
                "carrier": body.carrier,
                **sections,
            }
        )
    except ValidationError as exc:
        raise InvalidRequest(f"the protection cannot be built: {_first_error(exc, overrides)}") from exc


def _first_error(exc: ValidationError, overrides: dict[str, dict[str, Any]]) -> str:
    """`where: what` of the first error; a field that `advanced` set is named as such."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    if loc and loc[0] in overrides and (len(loc) == 1 or loc[1] in overrides[loc[0]]):
        loc.insert(0, "advanced")
    return f"{'.'.join(loc)}: {error['msg']}" if loc else error["msg"]


def create_job(
    session: Session,
    principal: Principal,
    body: ProtectionCreate,
    idempotency_key: str | None,
    quotas: Quotas | None = None,
) -> tuple[ProtectionJob, bool]:
    """Write a queued job (or find the one this Idempotency-Key made); returns (job, created). With `quotas`, a new
    job is refused (QuotaExceeded) while its tenant has its limit of active jobs; a replay never is."""
    check_may_request(principal, body)
    digest = request_hash(body)
    if idempotency_key:
        earlier = find_replay(session, idempotency_tenant(session, principal, body), idempotency_key, digest)
        if earlier is not None:
            return earlier, False
    subjects = _load_subjects(session, principal, body)
    base = _base_model(session, body.base_model)
    spec = build_spec(body, subjects, base)
    tenant_id = subjects[0].tenant_id  # the job's tenant, under which its Idempotency-Key is kept
    if quotas is not None:
        check_active_jobs(session, tenant_id, quotas)
    job = ProtectionJob(
        tenant_id=tenant_id,
        created_by_key_id=principal.key_id,
        base_model=base,
        spec=spec.model_dump(mode="json"),
        verification_preset=body.verification,
        status=JobStatus.QUEUED,
        idempotency_key=idempotency_key,
        request_hash=digest,
        subjects=subjects,
    )
    session.add(job)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request with the same key won the race
        session.rollback()
        earlier = find_replay(session, tenant_id, idempotency_key or "", digest)
        if earlier is None:
            raise
        return earlier, False
    record_event(
        session,
        "job.protect",
        job,
        tenant_id=job.tenant_id,
        actor_key_id=principal.key_id,
        details={"subjects": [str(s.id) for s in subjects], "base_model": base.name},
    )
    session.commit()
    return job, True


def visible_jobs(principal: Principal) -> Select[tuple[ProtectionJob]]:
    stmt = select(ProtectionJob).options(  # load only what JobOut shows: ids of subjects and checkpoint
        selectinload(ProtectionJob.subjects).load_only(Subject.id, raiseload=True),
        joinedload(ProtectionJob.checkpoint).load_only(Checkpoint.id, raiseload=True).lazyload(Checkpoint.reports),
    )
    if not principal.is_admin:
        stmt = stmt.where(ProtectionJob.tenant_id == principal.tenant_id)
    return stmt


def filter_jobs(
    stmt: Select[tuple[ProtectionJob]], status: JobStatus | None, subject_id: uuid.UUID | None, model: str | None
) -> Select[tuple[ProtectionJob]]:
    if status is not None:
        stmt = stmt.where(ProtectionJob.status == status)
    if subject_id is not None:
        stmt = stmt.where(
            ProtectionJob.id.in_(select(job_subjects.c.job_id).where(job_subjects.c.subject_id == subject_id))
        )
    if model is not None:
        stmt = stmt.join(BaseModelEntry, BaseModelEntry.id == ProtectionJob.base_model_id).where(
            BaseModelEntry.name == model
        )
    return stmt


def _not_found(job_id: uuid.UUID) -> NotFound:
    return NotFound(f"no job {job_id}; list yours with GET /v1/jobs")


def get_visible_job(session: Session, principal: Principal, job_id: uuid.UUID) -> ProtectionJob:
    job = session.scalar(visible_jobs(principal).where(ProtectionJob.id == job_id))
    if job is None:
        raise _not_found(job_id)
    return job


class JobFields(Protocol):
    """The job columns a response shows or is computed from: a ProtectionJob, or a row of the status query."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    status: str
    phase: str | None
    phase_started_at: datetime | None
    phase_start_step: int
    lease_expires_at: datetime | None
    progress: float
    step: int
    total_steps: int
    losses: dict[str, float] | None
    error: str | None
    attempts: int
    cancel_requested: bool
    verification_preset: str
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


# The status read (GET /v1/jobs/{id}, the hottest endpoint) as one Core query on tables, built once: the job's
# columns that a response shows (those JobFields names), its base model's name, its checkpoint's id and one row per
# subject id. Building the statement per request and loading ORM objects with their relationships cost several times
# more CPU than the query itself.
_JOBS = ProtectionJob.__table__
_MODELS = BaseModelEntry.__table__
_CHECKPOINTS = Checkpoint.__table__
_JOB_STATUS_ANY_TENANT = (
    select(
        *(_JOBS.c[name] for name in JobFields.__annotations__),
        _MODELS.c.name.label("base_model_name"),
        _CHECKPOINTS.c.id.label("checkpoint_id"),
        job_subjects.c.subject_id,
    )
    .outerjoin(_MODELS, _MODELS.c.id == _JOBS.c.base_model_id)
    .outerjoin(_CHECKPOINTS, _CHECKPOINTS.c.job_id == _JOBS.c.id)
    .outerjoin(job_subjects, job_subjects.c.job_id == _JOBS.c.id)
    .where(_JOBS.c.id == bindparam("job_id"))
)
_JOB_STATUS_OWN_TENANT = _JOB_STATUS_ANY_TENANT.where(_JOBS.c.tenant_id == bindparam("tenant_id"))


def visible_job_out(connection: Connection, principal: Principal, job_id: uuid.UUID) -> JobOut:
    """`job_out(get_visible_job(...))` without loading ORM objects; NotFound for an unknown or foreign job. It takes a
    bare connection: a Core statement needs none of an ORM session's machinery, which cost over half as much again
    as the query."""
    if principal.is_admin:
        rows = connection.execute(_JOB_STATUS_ANY_TENANT, {"job_id": job_id}).all()
    else:
        rows = connection.execute(_JOB_STATUS_OWN_TENANT, {"job_id": job_id, "tenant_id": principal.tenant_id}).all()
    if not rows:
        raise _not_found(job_id)
    return _job_out_from_rows(rows)


def _job_out_from_rows(rows: Sequence[Row[Any]]) -> JobOut:
    first = rows[0]
    subject_ids = [row.subject_id for row in rows if row.subject_id is not None]
    return _build_job_out(first, subject_ids, first.checkpoint_id, first.base_model_name)


def cancel_job(session: Session, principal: Principal, job: ProtectionJob) -> ProtectionJob:
    """Queued jobs end at once; running ones get the cancel flag, which the runner checks between steps."""
    if JobStatus(job.status).terminal:
        raise InvalidState(f"job {job.id} already {job.status}; only queued or running jobs can be cancelled")
    job.cancel_requested = True
    if job.status == JobStatus.QUEUED:
        job.status, job.finished_at, job.error = JobStatus.CANCELLED, utcnow(), "cancelled on request"
    record_event(session, "job.cancel", job, tenant_id=job.tenant_id, actor_key_id=principal.key_id)
    session.commit()
    return job


def retry_job(
    session: Session, principal: Principal, job: ProtectionJob, quotas: Quotas | None = None
) -> ProtectionJob:
    """Put a failed or cancelled job back in the queue (its attempts count goes on). Any lease still recorded is
    cleared: the job is free for the next worker at once, not when that lease would have run out. With `quotas`,
    refused (QuotaExceeded) while the job's tenant has its limit of active jobs."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise InvalidState(f"job {job.id} is {job.status}; only failed or cancelled jobs can be retried")
    if quotas is not None:
        check_active_jobs(session, job.tenant_id, quotas)
    job.status, job.error, job.cancel_requested = JobStatus.QUEUED, None, False
    job.started_at = job.finished_at = None
    job.lease_owner = job.lease_expires_at = job.heartbeat_at = None
    job.progress, job.step = 0.0, 0
    job.phase, job.phase_started_at, job.phase_start_step = None, None, 0
    record_event(session, "job.retry", job, tenant_id=job.tenant_id, actor_key_id=principal.key_id)
    session.commit()
    return job


def job_out(job: ProtectionJob) -> JobOut:
    """The response shape of a job, with links."""
    checkpoint_id = job.checkpoint.id if job.checkpoint else None
    base_name = job.base_model.name if job.base_model else None
    return _build_job_out(job, [s.id for s in job.subjects], checkpoint_id, base_name)


def new_job_out(job: ProtectionJob) -> JobOut:
    """`job_out` of a job `create_job` just made: it has no checkpoint yet, so no query asks."""
    base_name = job.base_model.name if job.base_model else None
    return _build_job_out(job, [s.id for s in job.subjects], None, base_name)


def eta_seconds(job: JobFields, now: datetime) -> float | None:
    """Seconds left in the job's current phase: its elapsed time per step done in it, times the steps left. None
    unless the phase's work runs now (its lease is live: a running implantation, or the verification of a succeeded
    job) and at least one step was done since the phase started."""
    running = {JobPhase.PROTECTING: JobStatus.RUNNING, JobPhase.VERIFYING: JobStatus.SUCCEEDED}.get(job.phase)
    if running is None or job.status != running or job.phase_started_at is None:
        return None
    if job.lease_expires_at is None or job.lease_expires_at <= now:
        return None
    done, left = job.step - (job.phase_start_step or 0), job.total_steps - job.step
    elapsed = (now - job.phase_started_at).total_seconds()
    if done <= 0 or left < 0 or elapsed < 0:
        return None
    return elapsed * left / done


def _build_job_out(
    job: JobFields, subject_ids: list[uuid.UUID], checkpoint_id: uuid.UUID | None, base_name: str | None
) -> JobOut:
    return JobOut(
        id=job.id,
        tenant_id=job.tenant_id,
        status=JobStatus(job.status),
        phase=JobPhase(job.phase) if job.phase else None,
        progress=job.progress,
        step=job.step,
        total_steps=job.total_steps,
        eta_seconds=eta_seconds(job, utcnow()),
        losses=job.losses or {},
        error=job.error,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        base_model=base_name or job.spec.get("base_model", ""),
        verification=job.verification_preset,
        subject_ids=subject_ids,
        checkpoint_id=checkpoint_id,
        spec=job.spec,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        links=JobLinks(
            self=f"/v1/jobs/{job.id}",
            cancel=f"/v1/jobs/{job.id}/cancel",
            checkpoint=f"/v1/checkpoints/{checkpoint_id}" if checkpoint_id else None,
        ),
    )
