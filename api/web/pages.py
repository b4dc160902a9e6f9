"""What every web page shares: templates, the signed-in viewer, CSRF checks, error pages, security headers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from api.deps import SessionDep
from api.errors import domain_status
from api.services import dashboard
from api.services.errors import DomainError
from api.services.principal import Principal
from api.web import format as fmt
from api.web.session import COOKIE, WebAuth, WebSession
from common.models import Role

HERE = Path(__file__).parent
LOGIN_PATH = "/admin/login"
# Scripts, styles and images from this origin only (no inline script or style); nothing may frame the pages; links
# from a report page send no Referer, so a share link's token does not travel to other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(
    age=fmt.age, duration=fmt.duration, size=fmt.size, pct=fmt.pct, when=fmt.when, number=fmt.number
)


def page_url(request: Request, offset: int) -> str:
    """This page's address (path and query) at another offset of its list."""
    url = request.url.include_query_params(offset=offset)
    return f"{url.path}?{url.query}"


templates.env.globals["page_url"] = page_url


class PageError(Exception):
    """Answered with an error page of `status` saying `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SignInRequired(Exception):
    """Answered with a redirect to the sign-in page, which comes back to `next_path` afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def web_auth(request: Request) -> WebAuth:
    return request.app.state.web


def safe_next(path: str | None, default: str) -> str:
    """A local page to go to after a form: only paths under /admin or /reports (no other host, no scheme)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return default
    if not (path.startswith(("/admin/", "/reports")) or path == "/admin") or path.startswith(LOGIN_PATH):
        return default
    return path


def login_url(next_path: str) -> str:
    return f"{LOGIN_PATH}?next={quote(next_path, safe='/')}"


# --- dependencies ---


async def get_web_session(request: Request) -> WebSession:
    """The visitor's session from its cookie, or a new anonymous one (sent with the page that renders it)."""
    auth = web_auth(request)
    session = auth.read(request.cookies.get(COOKIE)) or auth.new()
    request.state.web_session = session
    return session


WebSessionDep = Annotated[WebSession, Depends(get_web_session)]


def get_viewer(request: Request, session: SessionDep, web: WebSessionDep) -> Principal | None:
    """The signed-in key's principal; None before sign-in, or once the key is revoked."""
    viewer = dashboard.principal_of_key(session, web.key_id) if web.key_id else None
    request.state.viewer = viewer
    return viewer


ViewerDep = Annotated[Principal | None, Depends(get_viewer)]


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def require_signed_in(request: Request, viewer: ViewerDep) -> Principal:
    if viewer is None:
        raise SignInRequired(_here(request))
    if viewer.role is Role.MODEL_HOST:
        raise PageError(403, "model host keys have no pages here; they download checkpoints through the API")
    return viewer


SignedIn = Annotated[Principal, Depends(require_signed_in)]


def require_admin(viewer: SignedIn) -> Principal:
    if not viewer.is_admin:
        raise PageError(
            403, "these pages are for admin keys; your key is a rights holder's: open your reports at /reports"
        )
    return viewer


AdminViewer = Annotated[Principal, Depends(require_admin)]


async def check_csrf(web: WebSessionDep, csrf_token: Annotated[str, Form(max_length=200)] = "") -> None:
    """Every state-changing form carries the session's CSRF token (a hidden field)."""
    if not web.csrf_matches(csrf_token):
        raise PageError(403, "this form has expired or did not come from this site; reload the page and try again")


CsrfChecked = Depends(check_csrf)


# --- responses ---


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page: the template with the viewer, the CSRF token and the security headers; a new session's cookie is
    set with it."""
    web: WebSession | None = getattr(request.state, "web_session", None)
    context = {"viewer": getattr(request.state, "viewer", None), "csrf": web.csrf if web else "", **context}
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    if web is not None and not web.from_cookie:
        web_auth(request).set_cookie(response, web)
    return response


def redirect(url: str) -> RedirectResponse:
    """After a form: see the result with a GET (303)."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status_code=status, status=status, message=message)


class PageRoute(APIRoute):
    """A page route: sign-in required answers a redirect to the sign-in page; refusals (the services' errors, bad
    parameters) answer an error page instead of the API's problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return redirect(login_url(exc.next_path))
            except PageError as exc:
                return error_page(request, exc.status, exc.message)
            except DomainError as exc:
                return error_page(request, domain_status(exc) or 500, exc.message)
            except RequestValidationError as exc:
                where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
                return error_page(request, 404 if "path" in where else 422, f"this address is not valid ({where})")

        return page
