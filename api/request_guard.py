"""The first check of every request, before the app reads any of its body (pure ASGI).

1. A key: every path but the public ones (health, docs, signed download links, and the web pages under the public
   prefixes, which authenticate by their sign-in cookie) needs `Authorization: Bearer` with a well-formed key
   (`common.keys.is_well_formed`; no lookup: the `get_principal` dependency still authenticates). Without one the
   answer is that dependency's 401, so an anonymous caller cannot make the app read, spool or parse a body. The
   body caps (3.) apply to every path, public ones included.
2. The key's request rate (api/rate_limit.py): a 429 with Retry-After.
3. The body's size: at most `max_upload_bytes` on the upload paths (multipart; PERSGUARD_MAX_REQUEST_BYTES) and
   `max_json_bytes` anywhere else (PERSGUARD_MAX_JSON_BODY_BYTES). A declared Content-Length over the cap is a 413 at
   once; a body that streams past it (chunked, or longer than declared) is a 413 as soon as it does, and the rest is
   never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import CHALLENGE, MISSING_KEY, UNKNOWN_KEY
from api.errors import problem_response
from api.rate_limit import RateLimiter
from common.keys import is_well_formed

CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class BodyCap:
    """A body limit and what to tell a caller who passed it."""

    max_bytes: int
    advice: str

    def declared(self, length: int) -> str:
        return f"the request body is {length:,} bytes; the limit is {self.max_bytes:,} bytes: {self.advice}"

    def streamed(self) -> str:
        return f"the request body passed the limit of {self.max_bytes:,} bytes; {self.advice}"


class BodyTooLarge(HTTPException):
    """Raised by `receive` when the body passes its cap; FastAPI's body reading lets HTTPException through, so the
    app's problem handler answers it."""


def bearer_key(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header, read as FastAPI's HTTPBearer reads them."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if not credentials or scheme.lower() != "bearer":
        return None
    return credentials


def route_path(scope: Scope) -> str:
    """The path the router matches: `path` without the `root_path` a proxy mounted the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :] or "/"
    return path


class RequestGuard:
    """Key, rate and body size of every HTTP request, before the app sees it (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        public_paths: frozenset[str],
        upload_paths: frozenset[str],
        public_prefixes: tuple[str, ...] = (),
        max_json_bytes: int,
        max_upload_bytes: int,
        rate_limiter: RateLimiter,
    ) -> None:
        self.app = app
        self.public_paths = public_paths
        self.public_prefixes = public_prefixes
        self.upload_paths = upload_paths
        self.json_cap = BodyCap(max_json_bytes, "send a smaller JSON body")
        self.upload_cap = BodyCap(max_upload_bytes, "send fewer or smaller images")
        self.rate_limiter = rate_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = content_length = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
        # A refusal with a body left unread closes the connection, so that the server does not read the rest to
        # reach the next request.
        unread = chunked or (content_length is not None and content_length not in (b"0", b""))
        path = route_path(scope)
        if not self._public(path):
            key = bearer_key(authorization)
            if key is None or not is_well_formed(key):
                detail = MISSING_KEY if key is None else UNKNOWN_KEY
                headers = {**CHALLENGE, **CLOSE} if unread else CHALLENGE
                await self._refuse(scope, receive, send, 401, detail, kind="unauthenticated", headers=headers)
                return
            wait_s = self.rate_limiter.acquire(key)
            if wait_s:
                limiter = self.rate_limiter
                detail = (
                    f"this API key sent more than {limiter.rate:g} requests per second (after a burst of "
                    f"{limiter.burst}); retry after {wait_s} s, and spread requests out"
                )
                headers = {"Retry-After": str(wait_s), **(CLOSE if unread else {})}
                await self._refuse(scope, receive, send, 429, detail, kind="rate-limited", headers=headers)
                return
        cap = self.upload_cap if path in self.upload_paths else self.json_cap
        if content_length is not None and content_length.isdigit() and int(content_length) > cap.max_bytes:
            await self._refuse(scope, receive, send, 413, cap.declared(int(content_length)), headers=CLOSE)
            return
        await self.app(scope, _capped(receive, cap), send)

    def _public(self, path: str) -> bool:
        """A public path, or one at or under a public prefix (`/admin` covers `/admin/jobs`, not `/administer`)."""
        if path in self.public_paths:
            return True
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.public_prefixes)

    @staticmethod
    async def _refuse(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer without reading the body (the server discards it, or closes the connection)."""
        response = problem_response(Request(scope), status, detail, kind=kind, headers=headers)
        await response(scope, receive, send)


def _capped(receive: Receive, cap: BodyCap) -> Receive:
    """`receive` that raises BodyTooLarge as soon as the body passes `cap`."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap.max_bytes:
                raise BodyTooLarge(413, cap.streamed(), headers=CLOSE)
        return message

    return wrapped
