"""A token bucket per API key, in process memory (PERSGUARD_RATE_LIMIT_PER_S, PERSGUARD_RATE_LIMIT_BURST).

Each API process keeps its own buckets: with N processes (`persguard serve --workers N`, or N replicas) a key may
send up to N times the rate in all. A bucket is keyed by the sha256 of the presented key, so only a caller holding
a key can spend its requests, and no key is kept in the clear.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time

MAX_BUCKETS = 10_000


class RateLimiter:
    """`rate_per_s` requests per second per key, after a first burst of `burst`; a rate of 0 turns it off."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.enabled = rate_per_s > 0
        self._buckets: dict[bytes, list[float]] = {}  # digest -> [tokens, monotonic time they were counted]
        self._lock = threading.Lock()

    def acquire(self, key: str) -> int:
        """0 if `key` may send a request now (it is counted), else the whole seconds to wait before it may."""
        if not self.enabled:
            return 0
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(digest)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._evict(now)
                bucket = self._buckets[digest] = [float(self.burst), now]
            tokens = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1:
                bucket[0] = tokens - 1
                return 0
            bucket[0] = tokens
        return max(1, math.ceil((1 - tokens) / self.rate))

    def _evict(self, now: float) -> None:
        """Drop the buckets that have refilled (forgetting them changes nothing); if none has, all of them."""
        refill_s = self.burst / self.rate
        self._buckets = {d: b for d, b in self._buckets.items() if now - b[1] < refill_s}
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()
