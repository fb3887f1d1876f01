"""Client-side rate budgets: one token bucket per Rescale throttle scope, kept under each hard limit.

The scopes and which requests spend them follow Rescale's own client (Rescale Interlink,
internal/ratelimit): ROUTES below, first match wins. Each bucket refills at `target_fraction` (0.85)
of the scope's hourly limit, because going over "blocks access for an extended time", holds at most
the scope's burst, and starts full. `drain(scope, for_s)` empties a bucket and keeps it empty for
`for_s` seconds: a 429 with Retry-After drains only its own scope; an agent restarted soon after a crash
drains all of them, so a crash loop cannot fire a fresh burst on every start.

Who spends decides how (`spending(...)`, a context variable the agent's threads set; SPENDINGS): a
cancel and the poll reserve a token and sleep for it, so they go before everything else; a worker's
finishing or starting step and a live-log tail never sleep here: they take a token now or raise
BudgetExhausted, and their work goes back to its queue. A start and a tail also leave a share of
the burst (their floor) to the work that goes first. Any other caller (a CLI command, the orphan
check) reserves and sleeps. The agent's dispatcher uses `state()` to hand a worker only work whose
scope has tokens, so a worker's step rarely finds its scope spent.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from burst_agent.config import RateLimits

JOB_SUBMISSION = "job-submission"
JOBS_USAGE = "jobs-usage"
USER = "user"
FILE_ACCESS = "file-access"
BILLING = "billing"
SCOPES = (JOB_SUBMISSION, JOBS_USAGE, USER, FILE_ACCESS, BILLING)
COOLDOWN_MAX_S = 300.0  # a 429's Retry-After drains its scope at most this long (a hostile server)

# (method or "*", endpoint template pattern, scope): the first row that matches decides.
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/jobs/\{id\}/submit/$"), JOB_SUBMISSION),
    ("*", re.compile(r"^/jobs/"), JOBS_USAGE),
    ("*", re.compile(r"^/files/"), FILE_ACCESS),
    ("*", re.compile(r"^/billing/"), BILLING),
    ("*", re.compile(r"^/organizations/[^/]+/workspaces/[^/]+/billing/"), BILLING),
    ("*", re.compile(r""), USER),
)


class BudgetExhausted(BaseException):
    """A request that may not wait found its scope spent: its work goes back to its queue. Not an
    Exception, so that no step's `except Exception` counts it as a failure of the step or a file."""

    def __init__(self, scope: str, wait_s: float) -> None:
        super().__init__(f"the {scope} budget is spent for now (a token in {wait_s:.1f} s)")
        self.scope, self.wait_s = scope, wait_s


@dataclass(frozen=True)
class Spending:
    """How one kind of work spends: `waits` (reserve a token, sleep for it: goes first) or not (take
    one now or raise BudgetExhausted), leaving `floors` (scope -> share of its burst) to the rest."""

    name: str
    waits: bool
    floors: Mapping[str, float] = field(default_factory=dict)

    def floor(self, scope: str, capacity: float) -> float:
        """Tokens of `scope` (a bucket of `capacity`) this work leaves to the work that goes first."""
        return self.floors.get(scope, 0.0) * capacity


SPENDINGS: dict[str, Spending] = {s.name: s for s in (
    Spending("cancel", waits=True),  # a relay has only KillWait seconds
    Spending("poll", waits=True),  # one listing for every active job: before any job's own work
    Spending("finish", waits=False),
    # A small floor is enough for the order (finishing work takes the token at the refill's edge);
    # a large one would hold starts back after every drain (a restart, a 429) until it refilled.
    Spending("start", waits=False, floors={JOBS_USAGE: 0.01, FILE_ACCESS: 0.01}),
    Spending("tail", waits=False, floors={JOBS_USAGE: 0.2}),
)}
OTHER = Spending("other", waits=True)
_spending: ContextVar[Spending] = ContextVar("burst_agent_spending", default=OTHER)


@contextmanager
def spending(name: str) -> Iterator[None]:
    """Requests made in this block (and in threads started with its context) spend as `name` does."""
    token = _spending.set(SPENDINGS[name])
    try:
        yield
    finally:
        _spending.reset(token)


def current_spending() -> Spending:
    return _spending.get()


def floor_tokens(name: str, scope: str, capacity: float) -> float:
    """Tokens of `scope` that work of kind `name` leaves to the work that goes before it."""
    return SPENDINGS[name].floor(scope, capacity)


def scope_for(method: str, template: str) -> str:
    """The scope a request spends, by method and endpoint template (e.g. "/jobs/{id}/statuses/")."""
    return next(scope for m, pattern, scope in ROUTES
                if m in ("*", method) and pattern.match(template))


def limits_of(limits: RateLimits) -> dict[str, tuple[float, float]]:
    """{scope: (hard limit per hour, burst)} from the config."""
    return {
        JOB_SUBMISSION: (limits.job_submission_per_hour, limits.job_submission_burst),
        JOBS_USAGE: (limits.jobs_usage_per_hour, limits.jobs_usage_burst),
        USER: (limits.user_per_hour, limits.user_burst),
        FILE_ACCESS: (limits.file_access_per_hour, limits.file_access_burst),
        BILLING: (limits.billing_per_hour, limits.billing_burst),
    }


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


@dataclass(frozen=True)
class BudgetState:
    """One scope now, for the dispatcher, `status` and metrics."""

    limit_per_hour: float  # Rescale's hard limit
    rate_per_hour: float  # what we spend at most (limit x target fraction)
    capacity: float
    remaining: float  # tokens now; negative while requests wait or the scope cools down after a 429
    spent: int  # requests since start
    waited_s: float  # seconds requests slept in this bucket since start

    def seconds_until(self, tokens: float = 1.0) -> float:
        """How long until `tokens` are there (0 if they are now)."""
        return max(0.0, (tokens - self.remaining) * 3600.0 / self.rate_per_hour)


class RateBudgets:
    """Token buckets per scope. `acquire(scope)` blocks until the request may go; thread-safe."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        limits = limits or RateLimits()
        self.enabled = limits.enabled
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._limits = limits_of(limits)
        now = clock()
        self._buckets: dict[str, TokenBucket] = {}
        self._spent = dict.fromkeys(SCOPES, 0)
        self._waited = dict.fromkeys(SCOPES, 0.0)
        for scope, (hourly, burst) in self._limits.items():
            rate = hourly * limits.target_fraction / 3600.0
            self._buckets[scope] = TokenBucket(rate, max(1.0, burst), max(1.0, burst), now)

    def acquire(self, scope: str) -> float:
        """Spend one token of `scope` as the current `spending` says: sleep first if it waits, else
        take one above its floor now or raise BudgetExhausted; return the wait."""
        spend = _spending.get()
        with self._lock:
            if not self.enabled:
                self._spent[scope] += 1
                return 0.0
            bucket = self._buckets[scope]
            if spend.waits:
                wait = bucket.reserve(self._clock())
            else:
                bucket.refill(self._clock())
                floor = spend.floor(scope, bucket.capacity)
                if bucket.level - 1.0 < floor:
                    raise BudgetExhausted(scope, (floor + 1.0 - bucket.level) / bucket.rate)
                bucket.level, wait = bucket.level - 1.0, 0.0
            self._spent[scope] += 1
            self._waited[scope] += wait
        if wait > 0:
            self._sleep(wait)
        return wait

    def drain(self, scope: str | None = None, for_s: float = 0.0) -> None:
        """Empty `scope` (every scope if None) so that it refills only after `for_s` more seconds."""
        for_s = min(max(0.0, for_s), COOLDOWN_MAX_S)
        with self._lock:
            now = self._clock()
            for name in SCOPES if scope is None else (scope,):
                bucket = self._buckets[name]
                bucket.refill(now)
                bucket.level = min(bucket.level, 0.0) - for_s * bucket.rate

    def state(self, scope: str) -> BudgetState:
        with self._lock:
            bucket = self._buckets[scope]
            bucket.refill(self._clock())
            remaining = bucket.level if self.enabled else bucket.capacity
            return BudgetState(self._limits[scope][0], bucket.rate * 3600.0, bucket.capacity, remaining,
                               self._spent[scope], self._waited[scope])

    def remaining(self, scope: str) -> float:
        """Tokens left in `scope` now (negative while requests are queued on it); for metrics."""
        return self.state(scope).remaining

    def capacity(self, scope: str) -> float:
        return self._buckets[scope].capacity
