"""`/v1/jobs`: follow, cancel and retry protection jobs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminOnly, QuotasDep, ReadsDep, RightsHolderOrAdmin, RunnerDep, SessionDep
from api.errors import problem_responses
from api.pagination import PageDep, paginate
from api.schemas.common import NO_NUL, Page
from api.schemas.jobs import JobOut
from api.services import jobs as service
from common.models import JobStatus, ProtectionJob

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(401, 403, 422, 429))


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: SessionDep,
    principal: RightsHolderOrAdmin,
    page: PageDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this state")] = None,
    subject_id: Annotated[uuid.UUID | None, Query(description="only jobs protecting this subject")] = None,
    model: Annotated[
        str | None, Query(max_length=100, pattern=NO_NUL, description="only jobs on this base model")
    ] = None,
) -> dict:
    """Your tenant's jobs (all for admins), newest first."""
    stmt = service.filter_jobs(service.visible_jobs(principal), status, subject_id, model)
    stmt = stmt.order_by(ProtectionJob.created_at.desc(), ProtectionJob.id)
    return paginate(session, stmt, page, service.job_out)


@router.get("/{job_id}", response_model=JobOut, responses=problem_responses(404))
async def get_job(job_id: uuid.UUID, reads: ReadsDep, principal: RightsHolderOrAdmin) -> JobOut:
    """Status, progress, latest losses, error and links of one job."""
    # The hottest endpoint: async, its query batched with the others of this event-loop turn onto the read thread
    # (api/reads.py). A sync endpoint would cost a hop per request, and a second one to validate its return value.
    return await reads.run(service.visible_job_out, principal, job_id)


@router.post("/{job_id}/cancel", response_model=JobOut, responses=problem_responses(404, 409))
def cancel_job(job_id: uuid.UUID, session: SessionDep, principal: RightsHolderOrAdmin) -> JobOut:
    """Cancel a queued job at once, or ask a running one to stop."""
    job = service.get_visible_job(session, principal, job_id)
    return service.job_out(service.cancel_job(session, principal, job))


@router.post("/{job_id}/retry", status_code=202, response_model=JobOut, responses=problem_responses(404, 409))
def retry_job(
    job_id: uuid.UUID, session: SessionDep, runner: RunnerDep, quotas: QuotasDep, principal: AdminOnly
) -> JobOut:
    """Queue a failed or cancelled job again (admins); a 429 while its tenant is at its limit of active jobs."""
    job = service.retry_job(session, principal, service.get_visible_job(session, principal, job_id), quotas)
    runner.submit(job.id)
    return service.job_out(job)
