"""`/v1/protections`: ask for subjects to be protected; answers with the queued job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from api.deps import RightsHolderOrAdmin, RunnerDep, SessionDep
from api.errors import problem_responses
from api.schemas.jobs import JobOut, ProtectionCreate
from api.services import jobs as service

router = APIRouter(prefix="/v1/protections", tags=["protections"], responses=problem_responses(401, 403, 409, 422))


@router.post("", status_code=202, response_model=JobOut)
def create_protection(
    body: ProtectionCreate,
    session: SessionDep,
    runner: RunnerDep,
    principal: RightsHolderOrAdmin,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="replaying a request with the same key returns the same job"),
    ] = None,
) -> JobOut:
    """Queue a protection job; with an Idempotency-Key, a replay returns the first job instead of a new one."""
    job, created = service.create_job(session, principal, body, idempotency_key)
    if created:
        runner.submit(job.id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return service.job_out(job)
