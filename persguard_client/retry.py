"""When to retry a request, and how long to wait: 429 and 503 answers, honouring `Retry-After`, and connection
failures, with exponential backoff otherwise."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

import httpx

RETRY_STATUSES = (429, 503)


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; between them the server's Retry-After when it sends one (up to
    `max_retry_after_s`: a longer one, such as a quota's hour, is not waited for), else `backoff_s` x 2^n up to
    `max_backoff_s`."""

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1` after `response` (None: a connection failure), or None when
        the request is not to be retried."""
        if attempt >= self.attempts:
            return None
        if response is not None and response.status_code not in RETRY_STATUSES:
            return None
        after = retry_after_s(response) if response is not None else None
        if after is not None:
            return after if after <= self.max_retry_after_s else None
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))


NO_RETRY = RetryPolicy(attempts=1)


def retry_after_s(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
