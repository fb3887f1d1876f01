"""The dispatcher's memory between ticks: what is in flight on which scope, and who was told they wait.

The decisions are pacing.plan_dispatch's (pure); this shell reads the budgets, remembers the work
it let go until a worker is done with it, and tells a job once that it waits for budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.collect import append_log
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.pacing import (
    ANNOUNCE_AFTER_S,
    CREATE_NEXT,
    HOLDS_SUBMISSION,
    NOTE_REFRESH_S,
    STAGED_AHEAD,
    DispatchPlan,
    Scope,
    Work,
    needs_of,
    next_due_s,
    plan_dispatch,
    wait_estimate_s,
    waiting_note,
)
from burst_agent.record import JobRecord, plan_of
from burst_agent.rescale.ratelimit import JOB_SUBMISSION, SCOPES, BudgetState, floor_tokens


class Budgets(Protocol):
    enabled: bool

    def state(self, scope: str) -> BudgetState: ...


# States whose wait for the submission scope is told (a HELD job's reason is the core cap's).
WAITS_TOLD: frozenset[JobState] = frozenset({JobState.TRANSLATED, JobState.STAGED})


def work_of(job: JobRecord, resumes: str | None = None) -> Work:
    return Work(job.id, job.state, job.origin.owner_uid, job.cancel_requested_at is not None, job.created_at,
                resumes)


class Pacer:
    """Admits work by scope (thread-safe: workers call `done` and `may_step`, the loop calls `plan`)."""

    def __init__(self, budgets: Budgets, clock: Callable[[], float] = time.monotonic) -> None:
        self._budgets = budgets
        self._clock = clock
        self._lock = threading.Lock()
        # job id -> (the budgets its step needed, let go for a create, let go to start its uploads)
        self._admitted: dict[str, tuple[tuple[str, ...], bool, bool]] = {}
        self._resumes: dict[str, str] = {}  # job id -> the scope its step found spent midway
        self._told: dict[str, float] = {}  # job id -> when its log was last told it waits
        self.waiting: dict[str, int] = {}
        self.next_due_s = math.inf  # when the first waiting work's tokens are due (the loop wakes then)
        self._planned: dict[str, Scope] = {}  # the budgets the last plan saw (its waiting notes use them)

    def _states(self) -> dict[str, BudgetState]:
        return {name: self._budgets.state(name) for name in SCOPES} if self._budgets.enabled else {}


    def plan(self, jobs: Iterable[JobRecord], ready: Callable[[JobRecord], bool]) -> DispatchPlan:
        """What may go now among `jobs` (the actionable ones) that are `ready` (not in backoff, not
        being worked on); what goes is remembered as in flight until `done`."""
        jobs = list(jobs)
        states = self._states()
        scopes = {name: Scope(st.remaining, st.rate_per_hour) for name, st in states.items()}
        floors = {name: floor_tokens("start", name, st.capacity) for name, st in states.items()}
        with self._lock:
            # The submission scope is counted by the jobs holding its tokens, not by what is in flight.
            in_flight = Counter(scope for needs, _, _ in self._admitted.values() for scope in needs
                                if scope != JOB_SUBMISSION)
            holding = {job.id for job in jobs if job.state in HOLDS_SUBMISSION}
            holding |= {job_id for job_id, (_, create, _) in self._admitted.items() if create}
            staged = {job.id for job in jobs if job.state in STAGED_AHEAD} - holding
            staged |= {job_id for job_id, (_, _, stage) in self._admitted.items() if stage}
            works = [work_of(job, self._resumes.get(job.id)) for job in jobs if ready(job)]
            plan = plan_dispatch(works, scopes, in_flight,
                                 len(holding), len(staged - holding), floors)
            self.waiting = plan.waiting_counts()
            self.next_due_s = next_due_s(plan, scopes, floors)
            self._planned = scopes
        return plan

    def deferred(self, job_id: str, scope: str) -> None:
        """A worker's step found `scope` spent midway: the job waits for that scope, from where it is."""
        with self._lock:
            self._resumes[job_id] = scope

    def admitted(self, work: Work) -> None:
        with self._lock:
            self._resumes.pop(work.job_id, None)
            starting = not work.cancel
            self._admitted[work.job_id] = (needs_of(work), starting and work.state in CREATE_NEXT,
                                           starting and work.state is JobState.TRANSLATED)

    def may_step(self, job: JobRecord) -> bool:
        """Inside a worker: a job whose next step is a create, or the start of its uploads, goes on only
        if it was let go for that step; else it stops and waits for its turn at the next dispatch."""
        if job.cancel_requested_at is not None:
            return True
        with self._lock:
            _needs, create, stage = self._admitted.get(job.id, ((), False, False))
        if job.state in CREATE_NEXT:
            return create
        return stage if job.state is JobState.TRANSLATED else True

    def done(self, job_id: str) -> None:
        with self._lock:
            self._admitted.pop(job_id, None)

    def tell_waiting(self, ctx: Context, plan: DispatchPlan) -> None:
        """A waiting job's log says once that it waits, where and how long; its `status` reason says the
        same, told again every NOTE_REFRESH_S while it waits (its place and estimate move)."""
        queue = plan.waiting.get(JOB_SUBMISSION, [])
        scopes = self._planned
        if JOB_SUBMISSION not in scopes:
            return
        ahead, now = plan.ahead, self._clock()
        for place, work in enumerate(queue):
            told = self._told.get(work.job_id)
            if (told is not None and now - told < NOTE_REFRESH_S) or work.state not in WAITS_TOLD:
                continue
            seconds = wait_estimate_s(place, scopes[JOB_SUBMISSION], ahead)
            if seconds < ANNOUNCE_AFTER_S and told is None:
                continue
            self._told[work.job_id] = now
            note = waiting_note(JOB_SUBMISSION, place + ahead, seconds)
            job = ctx.store.record_reason(work.job_id, note)
            if told is None:
                self._tell_log(ctx, job, note, place + ahead, seconds)

    @staticmethod
    def _tell_log(ctx: Context, job: JobRecord, note: str, ahead: int, seconds: float) -> None:
        ctx.job_log(job).info("waiting for budget", scope=JOB_SUBMISSION, ahead=ahead,
                              estimate_s=round(seconds))
        try:
            append_log(plan_of(job).stdout_path, f"burst-agent: {note}\n".encode())
        except OSError as exc:  # said once or not at all: `status` still shows the wait
            ctx.job_log(job).warning("cannot write to the job's output file", error=str(exc))

    def went_on(self, ctx: Context, work: Work) -> None:
        """A job that was told it waits is on its way: its `status` reason no longer says it waits."""
        if self._told.pop(work.job_id, None) is not None and work.state in WAITS_TOLD:
            ctx.store.record_reason(work.job_id, None)
