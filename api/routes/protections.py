"""`/v1/protections`: ask for subjects to be protected; answers with the queued job."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import IdempotencyKey, Principal, QuotasDep, RightsHolderOrAdmin, RunnerDep, SessionDep
from api.errors import problem_responses
from api.schemas.jobs import JobOut, ProtectionCreate
from api.services import jobs as service
from api.services.quotas import Quotas
from common.jobs import JobRunner

router = APIRouter(
    prefix="/v1/protections", tags=["protections"], responses=problem_responses(401, 403, 409, 413, 422, 429)
)


def _protect(
    session: Session,
    runner: JobRunner,
    principal: Principal,
    body: ProtectionCreate,
    idempotency_key: str | None,
    quotas: Quotas,
) -> JobOut:
    """Write the job (or find the replayed one) and ring the doorbell for a new one: the blocking part."""
    job, created = service.create_job(session, principal, body, idempotency_key, quotas)
    if not created:
        return service.job_out(job)
    runner.submit(job.id)
    return service.new_job_out(job)


@router.post("", status_code=202, response_model=JobOut)
async def create_protection(
    body: ProtectionCreate,
    session: SessionDep,
    runner: RunnerDep,
    quotas: QuotasDep,
    principal: RightsHolderOrAdmin,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Queue a protection job; with an Idempotency-Key, a replay returns the first job instead of a new one. A tenant
    at its limit of active jobs gets a 429 (see docs/API.md, "Limits")."""
    # async with one explicit hop to a thread (see get_job in api/routes/jobs.py)
    job = await run_in_threadpool(_protect, session, runner, principal, body, idempotency_key, quotas)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job
