"""`/admin`: sign-in, and the admin dashboard's pages (jobs, subjects, checkpoints, models, workers, audit log)."""

from __future__ import annotations

import io
import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from PIL import Image
from sqlalchemy import select

from api.deps import QuotasDep, RunnerDep, SessionDep, SettingsDep, StorageDep
from api.services import dashboard
from api.services import jobs as job_service
from api.services.checkpoints import get_visible_checkpoint
from api.web.format import age, duration
from api.web.pages import (
    AdminViewer,
    CsrfChecked,
    PageError,
    PageRoute,
    ViewerDep,
    redirect,
    render,
    safe_next,
    web_auth,
)
from api.web.svg import loss_plot
from common.audit import record_event
from common.models import JobStatus, Role, Tenant
from common.storage import Storage, StorageError

router = APIRouter(prefix="/admin", route_class=PageRoute, include_in_schema=False)

Offset = Annotated[int, Query(ge=0, le=1_000_000)]
THUMBNAIL_PX = 160


@router.get("")
async def home() -> RedirectResponse:
    return redirect("/admin/jobs")


# --- sign-in ---


@router.get("/login")
def login_page(request: Request, viewer: ViewerDep, next: Annotated[str, Query(max_length=2000)] = "") -> Response:
    return render(request, "login.html", next=safe_next(next, ""), error=None)


@router.post("/login", dependencies=[CsrfChecked])
def login(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=300)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Sign in with an API key: a new session (and CSRF token) for it; admins go to the dashboard, rights holders to
    their reports."""
    principal = dashboard.sign_in(session, api_key) if api_key.strip() else None
    if principal is None:
        error = "Enter an API key." if not api_key.strip() else "This API key is unknown or revoked."
        return render(request, "login.html", status_code=401, next=safe_next(next, ""), error=error)
    if principal.role is Role.MODEL_HOST:
        error = "Model host keys have no pages here: they download checkpoints through the API."
        return render(request, "login.html", status_code=403, next=safe_next(next, ""), error=error)
    dashboard.record_sign_in(session, principal)
    default = "/admin/jobs" if principal.is_admin else "/reports"
    target = safe_next(next, default)
    if not principal.is_admin and target.startswith("/admin"):
        target = "/reports"
    auth = web_auth(request)
    response = redirect(target)
    auth.set_cookie(response, auth.new(principal.key_id))
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request) -> Response:
    response = redirect("/admin/login")
    web_auth(request).clear_cookie(response)
    return response


# --- jobs ---


@router.get("/jobs")
def jobs_page(
    request: Request,
    session: SessionDep,
    viewer: AdminViewer,
    status: Annotated[list[JobStatus], Query()] = [],  # noqa: B006 (FastAPI copies query defaults)
    q: Annotated[str, Query(max_length=200)] = "",
    offset: Offset = 0,
) -> Response:
    page = dashboard.list_jobs(session, viewer, status, q, offset)
    return render(request, "jobs.html", page=page, statuses=list(JobStatus), chosen=set(status), q=q, nav="jobs")


@router.get("/jobs/live")
def jobs_live(
    session: SessionDep,
    viewer: AdminViewer,
    id: Annotated[list[uuid.UUID], Query()] = [],  # noqa: B006
) -> JSONResponse:
    """Progress of the jobs a page shows, for its script to poll: the API's status read of each."""
    body = {str(live.out.id): _live(live) for live in dashboard.live_jobs(session, viewer, id[:100])}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _live(live: dashboard.LiveJob) -> dict[str, object]:
    out = live.out
    return {
        "status": out.status,
        "phase": out.phase,
        "step": out.step,
        "total_steps": out.total_steps,
        "progress": out.progress,
        "eta": duration(out.eta_seconds),
        "eta_seconds": out.eta_seconds,
        "attempts": out.attempts,
        "worker": live.worker or "—",
        "age": age(out.created_at),
        "error": out.error,
        "checkpoint_id": str(out.checkpoint_id) if out.checkpoint_id else None,
        "verified": live.verified,
    }


@router.get("/jobs/{job_id}")
def job_page(
    request: Request, job_id: uuid.UUID, session: SessionDep, storage: StorageDep, viewer: AdminViewer
) -> Response:
    detail = dashboard.get_job_detail(session, viewer, job_id)
    verification = request.app.state.report_cache.get(storage, detail.report) if detail.report else None
    return render(
        request,
        "job.html",
        job=detail,
        plot=loss_plot(detail.losses),
        verification=verification,
        spec_json=_pretty(detail.out.spec),
        nav="jobs",
    )


@router.get("/jobs/{job_id}/losses", response_class=HTMLResponse)
def job_losses(job_id: uuid.UUID, session: SessionDep, viewer: AdminViewer) -> HTMLResponse:
    """The loss plot alone, for the job page to refresh while the job runs."""
    job = job_service.get_visible_job(session, viewer, job_id)
    return HTMLResponse(str(loss_plot(dashboard.loss_points(job))), headers={"Cache-Control": "no-store"})


@router.post("/jobs/{job_id}/cancel", dependencies=[CsrfChecked])
def cancel(
    job_id: uuid.UUID,
    session: SessionDep,
    viewer: AdminViewer,
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """POST /v1/jobs/{id}/cancel's service, from a form."""
    job_service.cancel_job(session, viewer, job_service.get_visible_job(session, viewer, job_id))
    return redirect(safe_next(next, f"/admin/jobs/{job_id}"))


@router.post("/jobs/{job_id}/retry", dependencies=[CsrfChecked])
def retry(
    job_id: uuid.UUID,
    session: SessionDep,
    runner: RunnerDep,
    quotas: QuotasDep,
    viewer: AdminViewer,
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """POST /v1/jobs/{id}/retry's service, from a form."""
    job = job_service.retry_job(session, viewer, job_service.get_visible_job(session, viewer, job_id), quotas)
    runner.submit(job.id)
    return redirect(safe_next(next, f"/admin/jobs/{job_id}"))


# --- subjects, checkpoints, models ---


@router.get("/subjects")
def subjects_page(request: Request, session: SessionDep, viewer: AdminViewer, offset: Offset = 0) -> Response:
    return render(request, "subjects.html", page=dashboard.list_subjects(session, viewer, offset), nav="subjects")


@router.get("/images/{image_id}")
def subject_image(image_id: uuid.UUID, session: SessionDep, storage: StorageDep, viewer: AdminViewer) -> Response:
    """A thumbnail of one subject image (any tenant's: admins see every subject)."""
    return thumbnail(storage, dashboard.subject_image_key(session, viewer, image_id))


def thumbnail(storage: Storage, key: str) -> Response:
    """A PNG at most THUMBNAIL_PX on a side of a stored image."""
    try:
        with storage.open(key) as handle, Image.open(handle) as image:
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "PNG")
    except StorageError as exc:
        raise PageError(404, "the image is no longer stored") from exc
    return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/checkpoints")
def checkpoints_page(request: Request, session: SessionDep, viewer: AdminViewer, offset: Offset = 0) -> Response:
    page = dashboard.list_checkpoints(session, viewer, offset)
    return render(request, "checkpoints.html", page=page, nav="checkpoints")


@router.get("/checkpoints/{checkpoint_id}/download")
def download(
    checkpoint_id: uuid.UUID, session: SessionDep, storage: StorageDep, settings: SettingsDep, viewer: AdminViewer
) -> Response:
    """GET /v1/checkpoints/{id}/download from the dashboard: an expiring download link, audited."""
    checkpoint = get_visible_checkpoint(session, viewer, checkpoint_id)
    url = storage.presigned_get_url(checkpoint.storage_key, settings.download_url_ttl_s, f"{checkpoint.id}.tar")
    if url.startswith("/"):
        url = settings.public_base_url + url
    record_event(session, "checkpoint.download", checkpoint, tenant_id=checkpoint.tenant_id, actor_key_id=viewer.key_id)
    session.commit()
    return RedirectResponse(url, status_code=303)


@router.get("/models")
def models_page(request: Request, session: SessionDep, viewer: AdminViewer) -> Response:
    return render(request, "models.html", models=dashboard.list_models(session), nav="models")


# --- workers, queues, audit log ---


@router.get("/workers")
def workers_page(request: Request, session: SessionDep, runner: RunnerDep, viewer: AdminViewer) -> Response:
    leases, broker = dashboard.worker_leases(session), dashboard.broker_workers(runner)
    queues = dashboard.queues(session)
    return render(request, "workers.html", leases=leases, broker=broker, queues=queues, nav="workers")


@router.get("/audit")
def audit_page(
    request: Request,
    session: SessionDep,
    viewer: AdminViewer,
    action: Annotated[str, Query(max_length=50)] = "",
    tenant: Annotated[str, Query(max_length=100)] = "",
    target: Annotated[str, Query(max_length=64)] = "",
    offset: Offset = 0,
) -> Response:
    page = dashboard.list_audit(session, action, tenant, target, offset)
    return render(
        request,
        "audit.html",
        page=page,
        actions=dashboard.audit_actions(session),
        tenants=list(session.scalars(select(Tenant.name).order_by(Tenant.name))),
        action=action,
        tenant=tenant,
        target=target,
        nav="audit",
    )


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
