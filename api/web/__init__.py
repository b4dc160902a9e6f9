"""The web pages: the admin dashboard (`/admin`) and the rights holders' report pages (`/reports`).

Server-rendered Jinja2 templates with a small script of our own (static/app.js: live progress, confirmations), no
build step. The pages sign in with an API key into a signed session cookie (api/web/session.py) and show what the
API would show that key, through the same service functions (api/services/dashboard.py, api/services/reports.py).
See docs/DASHBOARD.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.services.reports import ReportCache, ReportLinks
from api.web import admin, reports
from api.web.session import WebAuth
from common.settings import Settings

# Served without an API key (the request guard lets them through, body caps still apply): the pages authenticate by
# their cookie or share link, and the static files are public.
WEB_PREFIXES = ("/admin", "/reports", "/static")


def install_web(app: FastAPI, settings: Settings) -> tuple[str, ...]:
    """Add the pages, their API route (share links) and static files to `app`; returns the paths that need no
    API key."""
    auth = WebAuth.from_settings(settings)
    app.state.web = auth
    app.state.report_links = ReportLinks(auth.secret, settings.report_link_ttl_s)
    app.state.report_cache = ReportCache()
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for router in (admin.router, reports.router, reports.api_router):
        app.include_router(router)
    return WEB_PREFIXES
