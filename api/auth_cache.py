"""A short-lived in-process cache of authenticated keys, so that hot endpoints skip the key lookup.

A revoked key keeps working in a process for at most `ttl` seconds (PERSGUARD_AUTH_CACHE_TTL_S; 0 disables).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Generic, TypeVar

V = TypeVar("V")
MAX_ENTRIES = 10_000


class AuthCache(Generic[V]):
    """Maps the sha256 of a presented key to what it authenticated as, until `ttl` seconds pass."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, V]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def get(self, key: str) -> V | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(self._digest(key))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, value: V) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                now = time.monotonic()
                self._entries = {k: e for k, e in self._entries.items() if e[0] >= now}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
            self._entries[self._digest(key)] = (time.monotonic() + self.ttl, value)
