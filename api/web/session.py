"""The web pages' sign-in: a signed session cookie (HttpOnly, SameSite=Strict) and its CSRF token.

The cookie holds no key: only the signed-in key's id (its row is looked up on every page, so a revoked key's
sessions end at once), a random CSRF token and an expiry, signed with HMAC-SHA256 under
`PERSGUARD_SESSION_SECRET`. A visitor who has not signed in gets a session without a key id, so that the sign-in
form has a CSRF token too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass

from starlette.responses import Response

from common.settings import Settings

log = logging.getLogger(__name__)

COOKIE = "persguard_session"


@dataclass(frozen=True)
class WebSession:
    """A visitor's session: a CSRF token, the signed-in key's id (None before sign-in), its expiry (Unix time),
    and whether it came from a valid cookie (False: new, not sent to the browser yet)."""

    csrf: str
    key_id: uuid.UUID | None
    expires: int
    from_cookie: bool = False

    def csrf_matches(self, token: str) -> bool:
        """Whether a form's token is this session's own (and the session is one the browser sent back)."""
        return self.from_cookie and hmac.compare_digest(self.csrf.encode(), token.encode("utf-8", "replace"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class WebAuth:
    """Makes, reads and sets session cookies; `secure` cookies when the service is reached over https."""

    def __init__(self, secret: bytes, ttl_s: int, secure: bool) -> None:
        self._secret = hashlib.sha256(b"persguard-session\0" + secret).digest()
        self.ttl_s = ttl_s
        self.secure = secure

    @classmethod
    def from_settings(cls, settings: Settings) -> WebAuth:
        if settings.session_secret is None:
            log.warning("PERSGUARD_SESSION_SECRET is unset: web sign-ins and report links end with this process")
            secret = secrets.token_bytes(32)
        else:
            secret = settings.session_secret.get_secret_value().encode()
        return cls(secret, settings.session_ttl_s, settings.public_base_url.startswith("https://"))

    @property
    def secret(self) -> bytes:
        """A key derived for this purpose; other signers (report links) derive theirs from it in turn."""
        return self._secret

    def new(self, key_id: uuid.UUID | None = None, now: float | None = None) -> WebSession:
        """A fresh session (a new CSRF token): anonymous, or signed in as `key_id`."""
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        return WebSession(csrf=secrets.token_urlsafe(32), key_id=key_id, expires=expires)

    def dump(self, session: WebSession) -> str:
        payload = {"c": session.csrf, "k": session.key_id.hex if session.key_id else None, "e": session.expires}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def read(self, cookie: str | None, now: float | None = None) -> WebSession | None:
        """The session a cookie holds; None if absent, tampered with, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(self._sign(body).encode(), signature.encode("utf-8", "replace")):
            return None
        try:
            payload = json.loads(_unb64(body))
            csrf, key, expires = str(payload["c"]), payload["k"], int(payload["e"])
            key_id = uuid.UUID(hex=key) if key else None
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if expires < (now if now is not None else time.time()) or len(csrf) < 32:
            return None
        return WebSession(csrf=csrf, key_id=key_id, expires=expires, from_cookie=True)

    def set_cookie(self, response: Response, session: WebSession) -> None:
        response.set_cookie(
            COOKIE,
            self.dump(session),
            max_age=max(0, session.expires - int(time.time())),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=self.secure)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
