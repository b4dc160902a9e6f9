"""What the web pages show (api/web/): jobs with their live progress, a job's timeline, checkpoints, subjects,
base models, workers and queues, the audit log. No HTTP here.

Authorization is the API's own: jobs come from `jobs.visible_jobs` / `jobs.get_visible_job` and are shown through
`jobs.job_out` (the same fields, the spec redacted where the API redacts it), subjects from
`subjects.visible_subjects`, checkpoints from `checkpoints.visible_checkpoints`. The pages that show every tenant
(workers, audit log, base models) are for admin keys only; the web routes check that.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from api.schemas.jobs import JobOut
from api.services import jobs as job_service
from api.services.checkpoints import visible_checkpoints
from api.services.errors import NotFound
from api.services.principal import Principal
from api.services.reports import job_artefacts
from api.services.subjects import visible_subjects
from common.audit import record_event
from common.jobs.recovery import unverified_checkpoints
from common.keys import authenticate
from common.models import (
    ApiKey,
    AuditEvent,
    BaseModelEntry,
    Checkpoint,
    JobStatus,
    ProtectionJob,
    Role,
    Subject,
    SubjectImage,
    Tenant,
    VerificationReport,
    job_subjects,
    utcnow,
)

if TYPE_CHECKING:  # celery (behind common.jobs.queue) is imported only where a broker is configured
    from common.jobs.queue import BrokerWorker

PAGE_SIZE = 25
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


# --- who is signed in ---


def sign_in(session: Session, api_key: str) -> Principal | None:
    """The principal of a live key (the API's own check, `common.keys.authenticate`); None if unknown or revoked."""
    row = authenticate(session, api_key.strip())
    return None if row is None else Principal(key_id=row.id, tenant_id=row.tenant_id, role=Role(row.role))


def record_sign_in(session: Session, principal: Principal) -> None:
    """The audit event of a sign-in to the pages."""
    key = session.get_one(ApiKey, principal.key_id)
    record_event(session, "session.sign_in", key, tenant_id=principal.tenant_id, actor_key_id=principal.key_id)
    session.commit()


def principal_of_key(session: Session, key_id: uuid.UUID) -> Principal | None:
    """The principal of a signed-in key, None once it is revoked or gone: a revoked key's sessions end at once."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    return Principal(key_id=row.id, tenant_id=row.tenant_id, role=Role(row.role))


# --- jobs ---


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, how many match in all, and where it starts."""

    rows: Sequence[Any]
    total: int
    offset: int
    limit: int = PAGE_SIZE

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None


@dataclass(frozen=True)
class JobRow:
    """A job as the dashboard lists it: the API's JobOut plus the subjects' names, tenant and worker."""

    out: JobOut
    subject_names: list[str]
    tenant: str
    worker: str | None

    @property
    def behaviours(self) -> list[str]:
        return behaviours(self.out.spec)

    @property
    def carrier(self) -> str:
        return str(self.out.spec.get("carrier", ""))


def behaviours(spec: dict[str, Any]) -> list[str]:
    """The behaviour kind of each subject of a job spec, in order."""
    kinds = []
    for subject in spec.get("subjects", []):
        behaviour = subject.get("behaviour") if isinstance(subject, dict) else None
        kinds.append(str(behaviour.get("kind", "pattern")) if isinstance(behaviour, dict) else "pattern")
    return kinds


def search_jobs(stmt: Select[tuple[ProtectionJob]], query: str) -> Select[tuple[ProtectionJob]]:
    """Jobs whose id or one of whose subjects' ids is `query` (a UUID), or one of whose subjects' names contains
    it (case-insensitive)."""
    query = query.strip()
    if not query:
        return stmt
    try:
        ident = uuid.UUID(query)
    except ValueError:
        named = (
            select(job_subjects.c.job_id)
            .join(Subject, Subject.id == job_subjects.c.subject_id)
            .where(func.lower(Subject.name).contains(query.lower(), autoescape=True))
        )
        return stmt.where(ProtectionJob.id.in_(named))
    with_subject = select(job_subjects.c.job_id).where(job_subjects.c.subject_id == ident)
    return stmt.where(or_(ProtectionJob.id == ident, ProtectionJob.id.in_(with_subject)))


def list_jobs(
    session: Session, principal: Principal, statuses: Iterable[JobStatus] = (), query: str = "", offset: int = 0
) -> Page:
    """The caller's visible jobs (GET /v1/jobs's rule), newest first, filtered by state and searched."""
    stmt = job_service.visible_jobs(principal)
    statuses = list(statuses)
    if statuses:
        stmt = stmt.where(ProtectionJob.status.in_(statuses))
    stmt = search_jobs(stmt, query)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    jobs = (
        session.scalars(
            stmt.order_by(ProtectionJob.created_at.desc(), ProtectionJob.id).limit(PAGE_SIZE).offset(offset)
        )
        .unique()
        .all()
    )
    return Page(rows=job_rows(session, jobs), total=total, offset=offset)


def job_rows(session: Session, jobs: Sequence[ProtectionJob]) -> list[JobRow]:
    outs = [job_service.job_out(job) for job in jobs]
    names = subject_names(session, [sid for out in outs for sid in out.subject_ids])
    tenants = tenant_names(session, [out.tenant_id for out in outs])
    return [
        JobRow(
            out=out,
            subject_names=[names.get(sid, str(sid)) for sid in out.subject_ids],
            tenant=tenants.get(out.tenant_id, str(out.tenant_id)),
            worker=job.lease_owner,
        )
        for job, out in zip(jobs, outs, strict=True)
    ]


def subject_names(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    ids = set(ids)
    if not ids:
        return {}
    return dict(session.execute(select(Subject.id, Subject.name).where(Subject.id.in_(ids))).all())


def tenant_names(session: Session, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(wanted))).all())


@dataclass(frozen=True)
class LiveJob:
    """A job's progress as the pages poll it: the API's status read plus the worker holding it."""

    out: JobOut
    worker: str | None
    verified: bool  # its checkpoint has a verification report


def live_jobs(session: Session, principal: Principal, ids: Iterable[uuid.UUID]) -> list[LiveJob]:
    """The status read of GET /v1/jobs/{id} (`visible_job_out`) for each id the caller may see; others are left out."""
    connection = session.connection()
    found = []
    for job_id in dict.fromkeys(ids):
        try:
            found.append(job_service.visible_job_out(connection, principal, job_id))
        except NotFound:
            continue
    ids = [out.id for out in found]
    workers = dict(
        session.execute(select(ProtectionJob.id, ProtectionJob.lease_owner).where(ProtectionJob.id.in_(ids))).all()
    )
    verified = set(
        session.scalars(
            select(Checkpoint.job_id)
            .join(VerificationReport, VerificationReport.checkpoint_id == Checkpoint.id)
            .where(Checkpoint.job_id.in_(ids))
        )
    )
    return [LiveJob(out=out, worker=workers.get(out.id), verified=out.id in verified) for out in found]


# --- one job ---


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    label: str
    detail: str = ""
    actor: str = ""


@dataclass(frozen=True)
class LossPoint:
    step: int
    losses: dict[str, float]


@dataclass
class JobDetail:
    """A job page: the API's JobOut, its subjects, its timeline, its loss history, checkpoint and verification."""

    out: JobOut
    tenant: str
    worker: str | None
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    subjects: list[Subject]
    timeline: list[TimelineEntry]
    losses: list[LossPoint]
    checkpoint: Checkpoint | None
    report: VerificationReport | None
    subject_names: dict[str, str] = field(default_factory=dict)

    @property
    def behaviours(self) -> list[str]:
        return behaviours(self.out.spec)


ACTION_LABELS = {
    "job.protect": "requested",
    "job.cancel": "cancel requested",
    "job.retry": "queued again (retry)",
    "report.share": "report share link created",
}


def get_job_detail(session: Session, principal: Principal, job_id: uuid.UUID) -> JobDetail:
    """NotFound for a job the caller may not see (GET /v1/jobs/{id}'s rule)."""
    job = job_service.get_visible_job(session, principal, job_id)
    out = job_service.job_out(job)
    subjects, checkpoint, report = job_artefacts(session, job, out)
    return JobDetail(
        out=out,
        tenant=tenant_names(session, [job.tenant_id]).get(job.tenant_id, str(job.tenant_id)),
        worker=job.lease_owner,
        heartbeat_at=job.heartbeat_at,
        lease_expires_at=job.lease_expires_at,
        subjects=subjects,
        timeline=timeline(session, job, checkpoint, report),
        losses=loss_points(job),
        checkpoint=checkpoint,
        report=report,
        subject_names={str(s.id): s.name for s in subjects},
    )


def loss_points(job: ProtectionJob) -> list[LossPoint]:
    """The job's loss history as the runner recorded it; without one, its latest losses as a single point."""
    history = job.loss_history or []
    points = [
        LossPoint(int(p["step"]), {k: float(v) for k, v in p["losses"].items()})
        for p in history
        if isinstance(p, dict) and isinstance(p.get("losses"), dict) and "step" in p
    ]
    if not points and job.losses:
        points = [LossPoint(job.step, {k: float(v) for k, v in job.losses.items()})]
    return points


def timeline(
    session: Session, job: ProtectionJob, checkpoint: Checkpoint | None, report: VerificationReport | None
) -> list[TimelineEntry]:
    """The job's audit events (request, cancel, retry, share links) and the state changes its row and its
    checkpoint record, oldest first."""
    events = session.execute(
        select(AuditEvent, ApiKey.prefix, ApiKey.role)
        .outerjoin(ApiKey, ApiKey.id == AuditEvent.actor_key_id)
        .where(AuditEvent.target_type == ProtectionJob.__tablename__, AuditEvent.target_id == str(job.id))
        .order_by(AuditEvent.created_at)
    ).all()
    entries = [
        TimelineEntry(
            event.created_at,
            ACTION_LABELS.get(event.action, event.action),
            _details(event.details),
            f"{role} key {prefix}" if prefix else "operator",
        )
        for event, prefix, role in events
    ]
    if job.started_at is not None:
        entries.append(TimelineEntry(job.started_at, "running", f"attempt {job.attempts}", job.lease_owner or ""))
    if job.finished_at is not None:
        entries.append(TimelineEntry(job.finished_at, str(job.status), job.error or ""))
    if checkpoint is not None:
        entries.append(TimelineEntry(checkpoint.created_at, "checkpoint published", f"sha256 {checkpoint.sha256}"))
    if report is not None:
        verdict = "passed" if report.passed else "not passed"
        detail = f"{report.preset}, {report.attempts} attempt(s)"
        entries.append(TimelineEntry(report.created_at, f"verification {verdict}", detail))
    return sorted(entries, key=lambda entry: entry.at)


def _details(details: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in (details or {}).items())


# --- lists of subjects, checkpoints, base models ---


@dataclass(frozen=True)
class CheckpointRow:
    checkpoint: Checkpoint
    tenant: str
    report: VerificationReport | None


def list_checkpoints(session: Session, principal: Principal, offset: int = 0) -> Page:
    stmt = visible_checkpoints(principal)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Checkpoint.created_at.desc(), Checkpoint.id).limit(PAGE_SIZE).offset(offset)
    ).all()
    tenants = tenant_names(session, [c.tenant_id for c in rows])
    return Page(
        rows=[CheckpointRow(c, tenants.get(c.tenant_id, ""), c.reports[0] if c.reports else None) for c in rows],
        total=total,
        offset=offset,
    )


@dataclass(frozen=True)
class SubjectRow:
    subject: Subject
    tenant: str


def list_subjects(session: Session, principal: Principal, offset: int = 0) -> Page:
    stmt = visible_subjects(principal)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.order_by(Subject.created_at.desc(), Subject.id).limit(PAGE_SIZE).offset(offset)).all()
    tenants = tenant_names(session, [s.tenant_id for s in rows])
    return Page(rows=[SubjectRow(s, tenants.get(s.tenant_id, "")) for s in rows], total=total, offset=offset)


def subject_image_key(session: Session, principal: Principal, image_id: uuid.UUID) -> str:
    """The storage key of an image of a subject the caller may see (`visible_subjects`); NotFound otherwise."""
    key = session.scalar(
        select(SubjectImage.storage_key)
        .join(Subject, Subject.id == SubjectImage.subject_id)
        .where(SubjectImage.id == image_id, Subject.id.in_(visible_subjects(principal).with_only_columns(Subject.id)))
    )
    if key is None:
        raise NotFound(f"no subject image {image_id}")
    return key


def list_models(session: Session) -> list[BaseModelEntry]:
    """Every registered base model (GET /v1/models shows them to every role)."""
    return list(session.scalars(select(BaseModelEntry).order_by(BaseModelEntry.name)))


# --- workers and queues (admins) ---


@dataclass(frozen=True)
class BrokerView:
    """What the broker says about its workers: `workers` when asked, else why not (`note`)."""

    workers: list[BrokerWorker] | None
    note: str


def broker_workers(runner: object, timeout: float = 1.0) -> BrokerView:
    """Celery's own view of the workers (`CeleryRunner.broker_workers`, an `inspect` broadcast) when the API rings a
    broker; the in-process runner has none."""
    inspect = getattr(runner, "broker_workers", None)
    if inspect is None:
        return BrokerView(None, "No broker is configured: the API's in-process runner runs the jobs.")
    try:
        workers = inspect(timeout)
    except Exception as exc:  # the broker is down or refuses: the page still shows the leases
        return BrokerView(None, f"The broker did not answer ({type(exc).__name__}).")
    return BrokerView(workers, f"{len(workers)} worker(s) answered within {timeout:g} s.")


@dataclass(frozen=True)
class WorkerLease:
    """A job held by a runner, as its row's lease and heartbeat tell."""

    owner: str
    job_id: uuid.UUID
    work: str  # "implanting" or "verifying"
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    alive: bool

    @property
    def host(self) -> str:
        return self.owner.split(":", 1)[0]


@dataclass(frozen=True)
class Queues:
    queued: int
    oldest_queued_at: datetime | None
    last_doorbell_at: datetime | None
    running: int
    verifications_pending: int
    by_tenant: list[tuple[str, int, int]]  # tenant, queued, running


def worker_leases(session: Session) -> list[WorkerLease]:
    """Every job some runner holds (a lease on its row): implantations and verifications, newest heartbeat first."""
    now = utcnow()
    rows = session.execute(
        select(
            ProtectionJob.id,
            ProtectionJob.status,
            ProtectionJob.lease_owner,
            ProtectionJob.heartbeat_at,
            ProtectionJob.lease_expires_at,
        )
        .where(ProtectionJob.lease_owner.is_not(None))
        .order_by(ProtectionJob.heartbeat_at.desc())
    ).all()
    return [
        WorkerLease(
            owner=owner,
            job_id=job_id,
            work="implanting" if status == JobStatus.RUNNING else "verifying",
            heartbeat_at=heartbeat,
            lease_expires_at=expires,
            alive=expires is not None and expires > now,
        )
        for job_id, status, owner, heartbeat, expires in rows
    ]


def queues(session: Session) -> Queues:
    """The job queue as the rows tell it: queued and running jobs (in all and per tenant), the oldest queued job,
    the last doorbell sent, and checkpoints still waiting for their verification."""
    queued = ProtectionJob.status == JobStatus.QUEUED
    counts = session.execute(
        select(
            func.count().filter(queued),
            func.min(ProtectionJob.created_at).filter(queued),
            func.max(ProtectionJob.enqueued_at).filter(queued),
            func.count().filter(ProtectionJob.status == JobStatus.RUNNING),
        )
    ).one()
    pending = session.scalar(select(func.count()).select_from(unverified_checkpoints().subquery()))
    per_tenant = session.execute(
        select(
            Tenant.name,
            func.count().filter(ProtectionJob.status == JobStatus.QUEUED),
            func.count().filter(ProtectionJob.status == JobStatus.RUNNING),
        )
        .join(Tenant, Tenant.id == ProtectionJob.tenant_id)
        .where(ProtectionJob.status.in_(ACTIVE))
        .group_by(Tenant.name)
        .order_by(Tenant.name)
    ).all()
    return Queues(
        queued=counts[0],
        oldest_queued_at=counts[1],
        last_doorbell_at=counts[2],
        running=counts[3],
        verifications_pending=pending or 0,
        by_tenant=[(name, q, r) for name, q, r in per_tenant],
    )


# --- audit log (admins) ---


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    tenant: str
    actor: str


def audit_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def list_audit(
    session: Session,
    action: str = "",
    tenant: str = "",
    target: str = "",
    offset: int = 0,
) -> Page:
    """Audit events, newest first, by action, tenant name and target id (a prefix of it)."""
    stmt = select(AuditEvent)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if tenant:
        stmt = stmt.where(AuditEvent.tenant_id.in_(select(Tenant.id).where(Tenant.name == tenant)))
    if target:
        stmt = stmt.where(AuditEvent.target_id.startswith(target.strip(), autoescape=True))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    events = session.scalars(
        stmt.order_by(AuditEvent.created_at.desc(), AuditEvent.id).limit(PAGE_SIZE).offset(offset)
    ).all()
    tenants = tenant_names(session, [e.tenant_id for e in events])
    keys = {e.actor_key_id for e in events if e.actor_key_id is not None}
    actors = {
        key_id: f"{role} key {prefix}"
        for key_id, prefix, role in (
            session.execute(select(ApiKey.id, ApiKey.prefix, ApiKey.role).where(ApiKey.id.in_(keys))).all()
            if keys
            else []
        )
    }
    rows = [
        AuditRow(
            e,
            tenants.get(e.tenant_id, "") if e.tenant_id else "",
            actors.get(e.actor_key_id, "operator") if e.actor_key_id else "operator",
        )
        for e in events
    ]
    return Page(rows=rows, total=total, offset=offset)
