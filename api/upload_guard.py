"""An ASGI guard for upload endpoints: right content type, and a body no larger than the request limit.

It answers before the multipart parser spools anything: a declared Content-Length over the limit is refused
at once, and a body that streams past the limit (chunked, or lying about its length) is cut off.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response


class UploadGuard:
    """Guards POST requests to `paths`: multipart/form-data only, at most `max_bytes` of body."""

    def __init__(self, app: ASGIApp, paths: set[str], max_bytes: int) -> None:
        self.app = app
        self.paths = paths
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request.headers.get("content-type", ""), request.headers.get("content-length"))
        if refusal is not None:
            status, detail = refusal
            await problem_response(request, status, detail)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _refusal(self, content_type: str, content_length: str | None) -> tuple[int, str] | None:
        if not content_type.lower().startswith("multipart/form-data"):
            shown = content_type or "none"
            return 415, f"send the images as multipart/form-data (content type was {shown})"
        if content_length is not None and content_length.isdigit() and int(content_length) > self.max_bytes:
            return (
                413,
                f"the request is {int(content_length):,} bytes; the limit is {self.max_bytes:,}: "
                "send fewer or smaller images",
            )
        return None

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_bytes

        async def wrapped() -> Message:
            nonlocal seen
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    detail = f"the request body passed the limit of {limit:,} bytes; send fewer or smaller images"
                    raise HTTPException(413, detail)  # FastAPI's body parser lets HTTPException through
            return message  # type: ignore[return-value]

        return wrapped
