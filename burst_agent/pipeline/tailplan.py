"""Live-log tail schedule (pure): which executing jobs to tail now, within a budget of tails per hour.

Each executing job has a next-due time. A tail that found new bytes brings the job back after the
minimum interval; an empty one doubles its interval up to the maximum (multiplies it by
NEVER_PRINTED_GROWTH while the job has never printed); a job seen executing for the first time is
due at once, and brings a token of its own. Tails spend tokens of the plan's own bucket (the share of
the jobs-usage scope given to live logs), so a cycle tails only as many jobs as the budget allows,
the most overdue first relative to their interval: printing jobs, then jobs not tailed yet, then
silent ones; a job two of its intervals overdue competes with the printing ones by lateness, so
none waits for ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# A job this many of its intervals overdue is ranked with the printing ones (no starvation).
STARVING_OVERDUE = 2.0
BUCKET_CYCLES = 2.0  # the bucket holds two cycles of budget: one late cycle is made up, no more
# An empty tail doubles the interval of a job that has printed; one that never printed backs off
# faster: at a cold start most jobs are silent, and their probes would take the printing ones' budget.
SILENT_GROWTH = 2.0
NEVER_PRINTED_GROWTH = 5.0
# Each job seen executing for the first time brings one token (its runs listing) beyond the bucket's
# capacity: a cold start finds the printing jobs sooner, for at most one call per job.
NEW_JOB_TOKENS = 1.0


@dataclass(frozen=True)
class TailPolicy:
    """The schedule's knobs: intervals in seconds, the budget in tails per hour, the cycle period."""

    min_interval_s: float
    max_interval_s: float
    per_hour: float
    cycle_s: float

    @property
    def capacity(self) -> float:
        return max(1.0, BUCKET_CYCLES * self.per_hour * self.cycle_s / 3600.0)


@dataclass
class Slot:
    """One executing job's place in the schedule."""

    due: float
    interval: float
    printing: bool | None = None  # the last tail found new bytes (None: not tailed yet)
    printed: bool = False  # some tail found new bytes

    def overdue(self, now: float) -> float:
        """How late the job is, in its own intervals (0 when just due)."""
        return (now - self.due) / self.interval

    def tier(self, now: float) -> int:
        """0 goes first: printing (or starving), then jobs not tailed yet, then silent ones."""
        if self.printing or self.overdue(now) >= STARVING_OVERDUE:
            return 0
        return 1 if self.printing is None else 2


class TailPlan:
    """The schedule of every executing job and the tail budget; the caller does the tailing."""

    def __init__(self, policy: TailPolicy, now: float) -> None:
        self.policy = policy
        self.slots: dict[str, Slot] = {}
        self._tokens = policy.capacity
        self._welcome = 0.0  # new jobs' first runs listings: outside the bucket's capacity, spent first
        self._at = now

    def set_policy(self, policy: TailPolicy) -> None:
        """A new policy (config reload): the bucket keeps its level, within the new capacity."""
        self.policy = policy
        self._tokens = min(self._tokens, policy.capacity)

    def sync(self, executing: Iterable[str], now: float) -> None:
        """Follow the executing set: new jobs are due now, jobs no longer executing are forgotten."""
        current = dict.fromkeys(executing)
        self.slots = {job_id: slot for job_id, slot in self.slots.items() if job_id in current}
        for job_id in current:
            if job_id not in self.slots:
                self.slots[job_id] = Slot(due=now, interval=self.policy.min_interval_s)
                self._welcome += NEW_JOB_TOKENS

    def ranked(self, now: float) -> list[str]:
        """The due jobs, the one to tail first first (refills the bucket to `now`)."""
        self._refill(now)

        def key(item: tuple[str, Slot]) -> tuple[int, float, str]:
            job_id, slot = item
            return (slot.tier(now), -slot.overdue(now), job_id)

        return [job_id for job_id, _slot in sorted(
            ((job_id, slot) for job_id, slot in self.slots.items() if slot.due <= now), key=key)]

    def has_budget(self) -> bool:
        return self._tokens + self._welcome >= 1.0

    def tailed(self, job_id: str, now: float, *, grew: bool, calls: int = 1) -> None:
        """Record a tail begun at `now` that made `calls` requests and did or did not find new bytes."""
        from_welcome = min(self._welcome, float(calls))
        self._welcome -= from_welcome
        self._tokens -= calls - from_welcome
        slot = self.slots.get(job_id)
        if slot is None:
            return
        policy = self.policy
        growth = SILENT_GROWTH if slot.printed else NEVER_PRINTED_GROWTH
        slot.interval = policy.min_interval_s if grew else \
            min(policy.max_interval_s, max(slot.interval, policy.min_interval_s) * growth)
        slot.printing = grew
        slot.printed = slot.printed or grew
        # From the due time, not the tail time, while the lag is only cycle granularity: the job
        # comes back every interval on average, however the cycle falls.
        slot.due = max(slot.due, now - policy.cycle_s) + slot.interval

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        self._at = max(self._at, now)
        self._tokens = min(self.policy.capacity, self._tokens + elapsed * self.policy.per_hour / 3600.0)

