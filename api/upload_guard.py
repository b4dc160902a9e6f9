"""An ASGI guard for upload endpoints: a POST there must be multipart/form-data (415 otherwise), refused before the
multipart parser sees it. Their body size is capped by api/request_guard.py (PERSGUARD_MAX_REQUEST_BYTES)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import problem_response


class UploadGuard:
    """Guards POST requests to `paths`: multipart/form-data only."""

    def __init__(self, app: ASGIApp, paths: set[str] | frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            detail = f"send the images as multipart/form-data (content type was {content_type or 'none'})"
            await problem_response(request, 415, detail)(scope, receive, send)
            return
        await self.app(scope, receive, send)
