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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from burst_agent.lifecycle import JobState
from burst_agent.rescale.ratelimit import FILE_ACCESS, JOB_SUBMISSION, JOBS_USAGE, USER

S = JobState

CANCEL, FINISH, START = 0, 1, 2  # work classes; lower goes first
# How each class's requests spend (rescale/ratelimit.SPENDINGS): a cancel may sleep for its token; a
# finishing or starting step never does, and a start leaves its floor of each scope to the others.
SPENDING_OF_CLASS: dict[int, str] = {CANCEL: "cancel", FINISH: "finish", START: "start"}

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
NOTE_REFRESH_S = 60.0  # a job still waiting has its `status` reason told its new place this often


@dataclass(frozen=True)
class Work:
    """A job with a step to run, as the dispatcher sees it."""

    job_id: str
    state: JobState
    owner: int
    cancel: bool = False
    since: float = 0.0  # when it was recorded: the order within one owner
    resumes: str | None = None  # the scope its last step found spent midway (it goes on from there)


@dataclass(frozen=True)
class Scope:
    """One scope's budget now: tokens there (may be negative) and the refill rate."""

    tokens: float
    per_hour: float

    def seconds_until(self, tokens: float) -> float:
        """How long until this scope holds `tokens` (0 if it does now)."""
        return max(0.0, tokens - self.tokens) * 3600.0 / self.per_hour


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


# The tokens a step's fixed part spends, a scope once per token, so that a step let go does not find
# its scope spent halfway and spend its first requests again at its next turn. (What varies with the
# job, such as per-file downloads, may still find it spent: that part resumes where it stopped.)
NEEDS: dict[JobState, tuple[str, ...]] = {
    S.STAGED: (JOB_SUBMISSION, JOBS_USAGE, JOBS_USAGE),  # a create and its tag; submit's token held
    S.HELD: (JOB_SUBMISSION, JOBS_USAGE, JOBS_USAGE),
    S.TRANSLATED: (STAGE_AHEAD, FILE_ACCESS, FILE_ACCESS),  # the script and the inputs bundle
    # The file listing; the exit code, the rest of the log and the outputs archive.
    S.STAGING_OUT: (JOBS_USAGE, FILE_ACCESS, FILE_ACCESS, FILE_ACCESS),
}


def needs_of(work: Work) -> tuple[str, ...]:
    """The tokens a step must find before it may go: a scope once per token it needs."""
    if work.cancel:
        return (JOBS_USAGE,)
    if work.state is S.STAGING_OUT and work.resumes:  # listed again; what it read before is kept
        return (JOBS_USAGE, work.resumes)
    if work.state in NEEDS:
        return NEEDS[work.state]
    scope = STEP_SCOPE.get(work.state, JOBS_USAGE)
    # Between create and submit the job holds its submission token already.
    return () if work.state in HOLDS_SUBMISSION and scope == JOB_SUBMISSION else (scope,)


def kept_from(work: Work, scope: str, start_floors: Mapping[str, float]) -> float:
    """Tokens of `scope` that `work` may not take: a start leaves its floor to finishing work."""
    return start_floors.get(scope, 0.0) if work_class(work) == START else 0.0


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
    staged_ahead: int = 0, start_floors: Mapping[str, float] | None = None,
) -> DispatchPlan:
    """Let go what each scope's tokens cover, after what is in flight on it; the rest waits.

    `holding_submission`: jobs between create and submit (in the store or in flight), each holding a
    submission token; `staged_ahead`: jobs with inputs staged or staging and no create yet;
    `start_floors`: tokens per scope that starting work leaves to finishing work and the poll. Cancels
    never wait: a stop must reach Rescale. A scope not given (budgets off) never makes work wait.
    """
    kept = start_floors or {}
    free: dict[str, float] = {name: math.floor(s.tokens) - in_flight.get(name, 0)
                              for name, s in scopes.items()}
    if JOB_SUBMISSION in free:
        free[JOB_SUBMISSION] -= holding_submission
        free[STAGE_AHEAD] = (math.floor(scopes[JOB_SUBMISSION].tokens) + STAGE_AHEAD_JOBS
                             - holding_submission - staged_ahead)
    plan = DispatchPlan(ahead=holding_submission + staged_ahead)
    for work in fair_order(works):
        needs = Counter(needs_of(work))
        short = [n for n, k in needs.items() if free.get(n, math.inf) - kept_from(work, n, kept) < k]
        if work.cancel or not short:
            for n, k in needs.items():
                free[n] = free.get(n, math.inf) - k
            plan.go.append(work)
        else:  # waiting to run ahead of submissions is waiting for the submission scope
            plan.waiting.setdefault(JOB_SUBMISSION if short[0] == STAGE_AHEAD else short[0], []).append(work)
    # Staged jobs that wait in the queue themselves are not ahead of it.
    plan.ahead -= sum(w.state in STAGED_AHEAD for w in plan.waiting.get(JOB_SUBMISSION, []))
    return plan


def next_due_s(plan: DispatchPlan, scopes: Mapping[str, Scope], start_floors: Mapping[str, float]) -> float:
    """Seconds until the first waiting work of some scope has the tokens it waits for (inf: none waits)."""
    due = math.inf
    for scope, queue in plan.waiting.items():
        if scope not in scopes or not queue:
            continue
        first = queue[0]
        needed = Counter(needs_of(first)).get(scope, 1) + kept_from(first, scope, start_floors)
        due = min(due, scopes[scope].seconds_until(needed))
    return due


def wait_estimate_s(place: int, scope: Scope, holding: int = 0) -> float:
    """Seconds until the job at `place` (0: next) in a scope's queue gets its token."""
    return scope.seconds_until(place + 1 + holding)


def waiting_note(scope: str, place: int, seconds: float) -> str:
    """What a waiting job's log says (once), like Rescale's own client saying it is pacing."""
    what = "submission budget" if scope == JOB_SUBMISSION else f"{scope} API budget"
    minutes = max(1, round(seconds / 60))
    return f"waiting for Rescale's {what}: {place} job{'' if place == 1 else 's'} ahead, about {minutes} min"
