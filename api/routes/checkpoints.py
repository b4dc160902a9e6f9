"""`/v1/checkpoints`: model hosts list and download protected checkpoints."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from sqlalchemy import Select

from api.deps import Principal, PrincipalDep, SessionDep, SettingsDep, StorageDep
from api.errors import ProblemError, problem_responses
from api.pagination import PageDep, paginate
from api.schemas.checkpoints import CheckpointLinks, CheckpointOut, VerificationSummary
from api.schemas.common import Page
from api.services.checkpoints import visible_checkpoints
from common.audit import record_event
from common.models import Checkpoint

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"], responses=problem_responses(401, 403, 422, 429))


def _visible(principal: Principal) -> Select[Checkpoint]:
    return visible_checkpoints(principal)


def _get(session: SessionDep, principal: Principal, checkpoint_id: uuid.UUID) -> Checkpoint:
    checkpoint = session.scalar(_visible(principal).where(Checkpoint.id == checkpoint_id))
    if checkpoint is None:
        raise ProblemError(404, f"no checkpoint {checkpoint_id}; list them with GET /v1/checkpoints", kind="not-found")
    return checkpoint


def checkpoint_out(checkpoint: Checkpoint) -> CheckpointOut:
    latest = checkpoint.reports[0] if checkpoint.reports else None
    return CheckpointOut(
        id=checkpoint.id,
        tenant_id=checkpoint.tenant_id,
        job_id=checkpoint.job_id,
        parent_id=checkpoint.parent_id,
        size_bytes=checkpoint.size_bytes,
        sha256=checkpoint.sha256,
        manifest=checkpoint.manifest,
        created_at=checkpoint.created_at,
        verification=VerificationSummary.model_validate(latest) if latest else None,
        links=CheckpointLinks(
            self=f"/v1/checkpoints/{checkpoint.id}", download=f"/v1/checkpoints/{checkpoint.id}/download"
        ),
    )


@router.get("", response_model=Page[CheckpointOut])
def list_checkpoints(session: SessionDep, principal: PrincipalDep, page: PageDep) -> dict:
    """Checkpoints you may download: all for model hosts and admins, your tenant's for rights holders."""
    stmt = _visible(principal).order_by(Checkpoint.created_at.desc(), Checkpoint.id)
    return paginate(session, stmt, page, checkpoint_out)


@router.get("/{checkpoint_id}", response_model=CheckpointOut, responses=problem_responses(404))
def get_checkpoint(checkpoint_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> CheckpointOut:
    """Manifest, sha256 and verification summary of one checkpoint."""
    return checkpoint_out(_get(session, principal, checkpoint_id))


@router.get(
    "/{checkpoint_id}/download",
    status_code=307,
    response_class=RedirectResponse,
    responses={307: {"description": "Redirect to a presigned, expiring download URL"}, **problem_responses(404)},
)
def download_checkpoint(
    checkpoint_id: uuid.UUID,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> RedirectResponse:
    """Redirect to a presigned URL of the checkpoint archive (valid for PERSGUARD_DOWNLOAD_URL_TTL_S seconds)."""
    checkpoint = _get(session, principal, checkpoint_id)
    url = storage.presigned_get_url(checkpoint.storage_key, settings.download_url_ttl_s, f"{checkpoint.id}.tar")
    if url.startswith("/"):  # local storage: served by this API, at its configured address (never the Host header)
        url = settings.public_base_url + url
    record_event(
        session, "checkpoint.download", checkpoint, tenant_id=checkpoint.tenant_id, actor_key_id=principal.key_id
    )
    session.commit()
    return RedirectResponse(url, status_code=307)
