"""`/reports`: the read-only report page of a job, for its rights holder (signed in) or a share link's holder."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.deps import RightsHolderOrAdmin, SessionDep, SettingsDep, StorageDep
from api.errors import problem_responses
from api.schemas.reports import ReportLinkOut
from api.services import dashboard, reports
from api.services import jobs as job_service
from api.web.admin import thumbnail
from api.web.pages import CsrfChecked, PageError, PageRoute, SignedIn, SignInRequired, ViewerDep, render
from common.models import ProtectionJob, Role

router = APIRouter(prefix="/reports", route_class=PageRoute, include_in_schema=False)
api_router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(401, 403, 422, 429))


@dataclass(frozen=True)
class ReportAccess:
    """The job whose report is shown, and the share token that opened it (None: a signed-in viewer)."""

    job: ProtectionJob
    token: str | None


def report_access(
    request: Request,
    job_id: uuid.UUID,
    session: SessionDep,
    viewer: ViewerDep,
    token: Annotated[str, Query(max_length=300)] = "",
) -> ReportAccess:
    """A valid share link for this job, or a signed-in key that may see the job (GET /v1/jobs/{id}'s rule)."""
    if token:
        if request.app.state.report_links.job_of(token) != job_id:
            raise PageError(403, "this share link is not valid or has expired; ask the job's owner for a new one")
        return ReportAccess(reports.shared_job(session, job_id), token)
    if viewer is None:
        raise SignInRequired(request.url.path)
    if viewer.role is Role.MODEL_HOST:
        raise PageError(403, "model host keys have no report pages; they download checkpoints through the API")
    return ReportAccess(job_service.get_visible_job(session, viewer, job_id), None)


ReportDep = Annotated[ReportAccess, Depends(report_access)]


@router.get("")
def reports_page(request: Request, session: SessionDep, viewer: SignedIn, offset: int = Query(0, ge=0)) -> Response:
    """The signed-in key's jobs (all for admins), each linking to its report."""
    page = dashboard.list_jobs(session, viewer, offset=offset)
    return render(request, "reports.html", page=page, nav="reports")


@router.get("/{job_id}")
def report_page(request: Request, access: ReportDep, session: SessionDep, storage: StorageDep) -> Response:
    report = reports.job_report(session, storage, request.app.state.report_cache, access.job)
    return render(
        request,
        "report.html",
        report=report,
        token=access.token,
        share_url=None,
        psr_meaning=reports.PSR_MEANING,
        false_trigger_meaning=reports.FALSE_TRIGGER_MEANING,
        nav="reports",
    )


@router.post("/{job_id}/share", dependencies=[CsrfChecked])
def share(
    request: Request,
    job_id: uuid.UUID,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    viewer: SignedIn,
) -> Response:
    """Make a share link of the report (for a signed-in key that may see the job) and show it on the page."""
    job = job_service.get_visible_job(session, viewer, job_id)
    links = request.app.state.report_links
    url, expires = reports.share_link(session, links, viewer, job, settings.public_base_url)
    report = reports.job_report(session, storage, request.app.state.report_cache, job)
    return render(
        request,
        "report.html",
        report=report,
        token=None,
        share_url=url,
        share_expires=expires,
        psr_meaning=reports.PSR_MEANING,
        false_trigger_meaning=reports.FALSE_TRIGGER_MEANING,
        nav="reports",
    )


@router.get("/{job_id}/images/{image_id}")
def report_image(image_id: uuid.UUID, access: ReportDep, session: SessionDep, storage: StorageDep) -> Response:
    """A thumbnail of one of the job's subject images."""
    return thumbnail(storage, reports.job_image_key(session, access.job, image_id))


def _grid(request: Request, access: ReportAccess, session: SessionDep, storage: StorageDep, index: int) -> reports.Grid:
    """Image grid number `index` of the job's latest verification report; a 404 page if there is none."""
    report = reports.job_report(session, storage, request.app.state.report_cache, access.job)
    grids = report.verification.grids if report.verification else []
    if not 0 <= index < len(grids):
        raise PageError(404, "no such image in this job's verification report")
    return grids[index]


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{job_id}/grids/{index}")
def report_grid(request: Request, index: int, access: ReportDep, session: SessionDep, storage: StorageDep) -> Response:
    """Image grid number `index` of the job's latest verification report."""
    return _png(_grid(request, access, session, storage, index).png)


@router.get("/{job_id}/grids/{index}/tiles/{tile}")
def report_grid_tile(
    request: Request, index: int, tile: int, access: ReportDep, session: SessionDep, storage: StorageDep
) -> Response:
    """Image number `tile` (from 0, in `Grid.tiles`) of grid `index`: one generated image, judged on its own."""
    tiles = _grid(request, access, session, storage, index).tiles
    if not 0 <= tile < len(tiles):
        raise PageError(404, "no such image in this job's verification report")
    return _png(tiles[tile].png)


@api_router.post(
    "/{job_id}/report-link", status_code=201, response_model=ReportLinkOut, responses=problem_responses(404)
)
def create_report_link(
    request: Request, job_id: uuid.UUID, session: SessionDep, settings: SettingsDep, principal: RightsHolderOrAdmin
) -> ReportLinkOut:
    """A share link of the job's read-only report page: opens it without a key until it expires
    (PERSGUARD_REPORT_LINK_TTL_S); audited."""
    job = job_service.get_visible_job(session, principal, job_id)
    links = request.app.state.report_links
    url, expires = reports.share_link(session, links, principal, job, settings.public_base_url)
    return ReportLinkOut(url=url, expires_at=expires)
