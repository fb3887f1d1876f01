"""Which jobs' next steps may go now: the scope each step spends, priorities, round-robin by owner (pure).

The dispatcher hands a worker only work whose scope has a token, so workers do not sleep in a rate
bucket, and work on a spent scope waits while work on the others goes on. Order: a stop or cancel
first (a relay has only KillWait seconds), then finishing jobs, then starting ones; among starting
jobs, owners take turns, so one user's 1,000-task array delays another user's single job by at most
one submission slot.

A create is let go only with a submission token for it: every job between its create and its submit
holds one, so created jobs never pile up on Rescale waiting for the job-submission scope.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from burst_agent.lifecycle import JobState
from burst_agent.rescale.ratelimit import FILE_ACCESS, JOB_SUBMISSION, JOBS_USAGE, USER

S = JobState

CANCEL, FINISH, START = 0, 1, 2  # work classes; lower goes first

# The scope each state's step spends first (its main requests; a step may make a few of another).
STEP_SCOPE: dict[JobState, str] = {
    S.RECEIVED: USER,  # the coretype catalogue, cached
    S.TRANSLATED: FILE_ACCESS,
    S.STAGING_IN: FILE_ACCESS,
    S.STAGED: JOBS_USAGE,
    S.HELD: JOBS_USAGE,
    S.CREATING: JOBS_USAGE,
    S.CREATED: JOBS_USAGE,
    S.TAGGED: JOBS_USAGE,
    S.PROJECT_SET: JOB_SUBMISSION,
    S.SUBMITTING: JOB_SUBMISSION,
    S.STAGING_OUT: JOBS_USAGE,
}
# Inputs staged or staging, no create yet: these jobs are ahead in line for a submission token.
STAGED_AHEAD: frozenset[JobState] = frozenset({S.STAGING_IN, S.STAGED, S.HELD})
# Not a Rescale scope: how many jobs' uploads may run ahead of the submission tokens (uploads spend
# file-access, which downloads need too; inputs uploaded hours before their submit only cost).
STAGE_AHEAD = "stage-ahead"
STAGE_AHEAD_JOBS = 8
# A create is the next step: it needs a submission token of its own (see the module docstring).
CREATE_NEXT: frozenset[JobState] = frozenset({S.STAGED, S.HELD})
# Between create and submit: the job holds a submission token and goes whenever its scope allows.
HOLDS_SUBMISSION: frozenset[JobState] = frozenset({S.CREATING, S.CREATED, S.TAGGED, S.PROJECT_SET,
                                                    S.SUBMITTING})
ANNOUNCE_AFTER_S = 10.0  # a wait shorter than this is not worth a line in the job's log


@dataclass(frozen=True)
class Work:
    """A job with a step to run, as the dispatcher sees it."""

    job_id: str
    state: JobState
    owner: int
    cancel: bool = False
    since: float = 0.0  # when it was recorded: the order within one owner


@dataclass(frozen=True)
class Scope:
    """One scope's budget now: tokens there (may be negative) and the refill rate."""

    tokens: float
    per_hour: float


@dataclass
class DispatchPlan:
    """What goes now (in order) and what waits, by scope (in order: index 0 goes next)."""

    go: list[Work] = field(default_factory=list)
    waiting: dict[str, list[Work]] = field(default_factory=dict)
    ahead: int = 0  # jobs ahead of the waiting ones: holding a submission token or staged for one

    def waiting_counts(self) -> dict[str, int]:
        return {scope: len(jobs) for scope, jobs in self.waiting.items()}


def work_class(work: Work) -> int:
    if work.cancel:
        return CANCEL
    return FINISH if work.state is S.STAGING_OUT else START


def needs_of(work: Work) -> tuple[str, ...]:
    """The budgets a step must find a token in before it may go (a step may spend more than one)."""
    if work.cancel:
        return (JOBS_USAGE,)
    if work.state in CREATE_NEXT:
        return (JOB_SUBMISSION, JOBS_USAGE)
    if work.state is S.TRANSLATED:  # its uploads start: only as far ahead of submissions as allowed
        return (STAGE_AHEAD, FILE_ACCESS)
    if work.state is S.STAGING_OUT:  # statuses and the file listing, then the downloads
        return (JOBS_USAGE, FILE_ACCESS)
    scope = STEP_SCOPE.get(work.state, JOBS_USAGE)
    # Between create and submit the job holds its submission token already.
    return () if work.state in HOLDS_SUBMISSION and scope == JOB_SUBMISSION else (scope,)


def fair_order(works: Iterable[Work]) -> list[Work]:
    """By class; within a class, owners take turns (each owner's jobs oldest first)."""
    ordered: list[Work] = []
    by_class: dict[int, dict[int, list[Work]]] = {}
    for work in sorted(works, key=lambda w: (w.since, w.job_id)):
        by_class.setdefault(work_class(work), {}).setdefault(work.owner, []).append(work)
    for cls in sorted(by_class):
        queues = list(by_class[cls].values())
        for turn in range(max(len(q) for q in queues)):
            ordered += [q[turn] for q in queues if turn < len(q)]
    return ordered


def plan_dispatch(
    works: Sequence[Work], scopes: Mapping[str, Scope], in_flight: Mapping[str, int], holding_submission: int,
    staged_ahead: int = 0,
) -> DispatchPlan:
    """Let go what each scope's tokens cover, after what is in flight on it; the rest waits.

    `holding_submission`: jobs between create and submit (in the store or in flight), each holding a
    submission token; `staged_ahead`: jobs with inputs staged or staging and no create yet. Cancels
    never wait: a stop must reach Rescale. A scope not given (budgets off) never makes work wait.
    """
    free: dict[str, float] = {name: math.floor(s.tokens) - in_flight.get(name, 0)
                              for name, s in scopes.items()}
    if JOB_SUBMISSION in free:
        free[JOB_SUBMISSION] -= holding_submission
        free[STAGE_AHEAD] = (math.floor(scopes[JOB_SUBMISSION].tokens) + STAGE_AHEAD_JOBS
                             - holding_submission - staged_ahead)
    plan = DispatchPlan(ahead=holding_submission + staged_ahead)
    for work in fair_order(works):
        needs = needs_of(work)
        short = [n for n in needs if free.get(n, math.inf) < 1]
        if work.cancel or not short:
            for n in needs:
                free[n] = free.get(n, math.inf) - 1
            plan.go.append(work)
        else:  # waiting to run ahead of submissions is waiting for the submission scope
            plan.waiting.setdefault(JOB_SUBMISSION if short[0] == STAGE_AHEAD else short[0], []).append(work)
    # Staged jobs that wait in the queue themselves are not ahead of it.
    plan.ahead -= sum(w.state in STAGED_AHEAD for w in plan.waiting.get(JOB_SUBMISSION, []))
    return plan


def wait_estimate_s(place: int, scope: Scope, holding: int = 0) -> float:
    """Seconds until the job at `place` (0: next) in a scope's queue gets its token."""
    needed = place + 1 + holding - scope.tokens
    return max(0.0, needed) * 3600.0 / scope.per_hour


def waiting_note(scope: str, place: int, seconds: float) -> str:
    """What a waiting job's log says (once), like Rescale's own client saying it is pacing."""
    what = "submission budget" if scope == JOB_SUBMISSION else f"{scope} API budget"
    minutes = max(1, round(seconds / 60))
    return f"waiting for Rescale's {what}: {place} job{'' if place == 1 else 's'} ahead, about {minutes} min"
