"""Client-side rate budgets: one token bucket per scope, so we stay under Rescale's hourly limits.

Scopes (defaults are Rescale's published limits, config.RateLimits):
  submission  POST /jobs/ (create) and POST /jobs/{id}/submit/      1000/h
  job_reads   GET anything under /jobs/                             90000/h
  other       everything else                                       7200/h

Burst: each bucket holds `burst_seconds` worth of its rate (default 60 s: 16.7 submissions, 1500 job
reads, 120 other calls) and starts full, so a quiet agent can fire a short burst at once, while a busy
one settles at the hourly rate. `drain()` empties them: an agent restarted within a burst window of its
previous start begins at the steady rate, so a crash loop cannot fire a fresh burst on every start.
A request that finds its bucket empty reserves its token (the level goes negative) and sleeps until the
bucket has refilled to it, outside the lock, so waiters are served in arrival order and never
oversubscribe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from burst_agent.config import RateLimits

SUBMISSION = "submission"
JOB_READS = "job_reads"
OTHER = "other"
SCOPES = (SUBMISSION, JOB_READS, OTHER)
BURST_SECONDS = 60.0

# (method, endpoint template) pairs that count against the submission budget.
_SUBMISSION_ENDPOINTS = frozenset({("POST", "/jobs/"), ("POST", "/jobs/{id}/submit/")})


def scope_for(method: str, template: str) -> str:
    """The budget a request spends: by method and endpoint template (e.g. "/jobs/{id}/statuses/")."""
    if (method, template) in _SUBMISSION_ENDPOINTS:
        return SUBMISSION
    if method == "GET" and template.startswith("/jobs/"):
        return JOB_READS
    return OTHER


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `capacity` saved up; the level may go negative (reservations)."""

    rate: float
    capacity: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def reserve(self, now: float) -> float:
        """Take one token; return how long the caller must wait before using it."""
        self.refill(now)
        self.level -= 1.0
        return 0.0 if self.level >= 0 else -self.level / self.rate


class RateBudgets:
    """Token buckets per scope. `acquire(scope)` blocks until the request may go; thread-safe."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        burst_seconds: float = BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        limits = limits or RateLimits()
        self.enabled = limits.enabled
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        per_hour = {
            SUBMISSION: limits.job_submission_per_hour,
            JOB_READS: limits.job_reads_per_hour,
            OTHER: limits.other_per_hour,
        }
        now = clock()
        self._buckets: dict[str, TokenBucket] = {}
        for scope, hourly in per_hour.items():
            capacity = max(1.0, hourly * burst_seconds / 3600.0)
            self._buckets[scope] = TokenBucket(hourly / 3600.0, capacity, capacity, now)

    def acquire(self, scope: str) -> float:
        """Spend one token of `scope`, sleeping first if the budget is exhausted; return the wait."""
        if not self.enabled:
            return 0.0
        with self._lock:
            wait = self._buckets[scope].reserve(self._clock())
        if wait > 0:
            self._sleep(wait)
        return wait

    def drain(self) -> None:
        """Empty every bucket: from now on requests go at the steady hourly rate until it refills."""
        with self._lock:
            now = self._clock()
            for bucket in self._buckets.values():
                bucket.refill(now)
                bucket.level = min(bucket.level, 0.0)

    def remaining(self, scope: str) -> float:
        """Tokens left in `scope` now (negative while requests are queued on it); for metrics."""
        with self._lock:
            bucket = self._buckets[scope]
            bucket.refill(self._clock())
            return bucket.level

    def capacity(self, scope: str) -> float:
        return self._buckets[scope].capacity
