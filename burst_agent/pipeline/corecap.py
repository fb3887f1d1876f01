"""The site's cap on cloud cores in cores provisioned on Rescale: a pure admission rule and a thin gate.

A job counts against `agent.max_cloud_cores` with the coresPerSlot x slots of the body the agent
sends, from the moment its create is attempted until it is final. Before a create, the gate checks
and reserves under one lock, so parallel workers cannot together pass the cap. A job that does not
fit waits in HELD (not a failure: no backoff) and is tried again at the next dispatch.

Order: first come, first served. A job goes only if it fits together with every older job waiting
at the gate, so the oldest waiting job is never passed by a younger one and cannot starve. The price:
cores may idle behind a big job while a small one would fit. Without runtimes there is no safe
backfill (small jobs passing whenever they fit would hold a big one off forever). A job bigger than
the whole cap never waits: it fails.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from burst_agent.ledger import JobLedger
from burst_agent.lifecycle import HOLDS_CORES, JobState
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.pipeline.hold import hold, leave_hold
from burst_agent.record import JobRecord, plan_or_none

Step = Callable[[Context, JobRecord], JobRecord]

# Inputs staged, no create attempted yet: waiting for (or about to take) cores.
AT_GATE: frozenset[JobState] = frozenset({JobState.STAGED, JobState.HELD})
# What one snapshot reads: the jobs holding cores (STAGING_OUT among them: Rescale reports "Completed"
# before "Shutting down cluster ..." and "Cluster stopped") and those at the gate.
SNAPSHOT_STATES: frozenset[JobState] = HOLDS_CORES | AT_GATE
# A held job is asked again at every dispatch (about every second): one store read serves them all.
SNAPSHOT_TTL_S = 1.0

# -- pure ---------------------------------------------------------------------------------------------


def provisioned_cores(job: JobRecord) -> int:
    """coresPerSlot x slots of each analysis in the body sent to Rescale (the plan's shape if none)."""
    plan = plan_or_none(job)
    if plan is None:
        return 0
    total = 0
    for analysis in plan.body.get("jobanalyses") or []:
        hardware = analysis.get("hardware") or {}
        total += int(hardware.get("coresPerSlot") or 0) * int(hardware.get("slots") or 1)
    return total or plan.cores


def holds_cores(job: JobRecord) -> bool:
    """Counted against the cap: a create was attempted (or a remote job exists) and it is not final."""
    return job.state in HOLDS_CORES


def at_gate(job: JobRecord) -> bool:
    """Inputs staged, no create attempted yet, not being cancelled: waiting for (or about to take) cores."""
    return job.state in AT_GATE and job.cancel_requested_at is None


def waiting(job: JobRecord) -> bool:
    """The job is held at the gate (advance stops here until the next dispatch)."""
    return job.state is JobState.HELD


@dataclass(frozen=True)
class Decision:
    """Whether a job needing `needs` cores may be created now, and the numbers that decided it."""

    needs: int
    in_use: int
    ahead: int  # cores of older jobs waiting at the gate, which go first
    cap: int | None

    @property
    def too_big(self) -> bool:
        return self.cap is not None and self.needs > self.cap

    @property
    def admit(self) -> bool:
        return self.cap is None or (not self.too_big and self.in_use + self.ahead + self.needs <= self.cap)


def waiting_reason(d: Decision) -> str:
    older = f", {d.ahead} more go to older jobs waiting first" if d.ahead else ""
    return (f"waiting for cloud cores: this job needs {d.needs}, {d.in_use} of the site's {d.cap}"
            f" are in use{older}")


def too_big_reason(d: Decision) -> str:
    return (f"this job needs {d.needs} cloud cores (coresPerSlot x slots on Rescale), more than the"
            f" site's whole cap of {d.cap} (agent.max_cloud_cores)")


@dataclass(frozen=True)
class Snapshot:
    """What the store said: cores of the jobs holding them, and the jobs at the gate, oldest first."""

    holding: dict[str, int]
    queue: tuple[tuple[float, str, int], ...]  # (created_at, id, cores)

    @classmethod
    def of(cls, jobs: Iterable[JobRecord]) -> Snapshot:
        holding, queue = {}, []
        for job in jobs:
            if holds_cores(job):
                holding[job.id] = provisioned_cores(job)
            elif at_gate(job):
                queue.append((job.created_at, job.id, provisioned_cores(job)))
        return cls(holding, tuple(sorted(queue)))


def decide(snap: Snapshot, reserved: dict[str, int], job: JobRecord, cap: int | None) -> Decision:
    """The decision for `job` given the store's snapshot and the reservations made since (by job id)."""
    counted = {**snap.holding, **reserved}
    counted.pop(job.id, None)
    mine = (job.created_at, job.id)
    ahead = sum(cores for created, jid, cores in snap.queue
                if (created, jid) < mine and jid not in counted and (cap is None or cores <= cap))
    return Decision(provisioned_cores(job), sum(counted.values()), ahead, cap)


# -- the gate (threads) -------------------------------------------------------------------------------


class CoreGate:
    """Check-and-reserve under one lock; a reservation lasts until the store shows the create attempt."""

    def __init__(self, store: JobLedger, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._reserved: dict[str, int] = {}
        self._snapshot: Snapshot | None = None
        self._taken_at = 0.0

    def _fresh(self) -> Snapshot:
        if self._snapshot is None or self.clock() - self._taken_at > SNAPSHOT_TTL_S:
            self._snapshot = Snapshot.of(self.store.jobs(SNAPSHOT_STATES))
            self._taken_at = self.clock()
        return self._snapshot

    def try_reserve(self, job: JobRecord, cap: int | None) -> Decision:
        """Decide; an admitted job's cores are reserved at once (before this returns)."""
        with self._lock:
            decision = decide(self._fresh(), self._reserved, job, cap)
            if decision.admit:
                self._reserved[job.id] = decision.needs
            return decision

    def release(self, job_id: str) -> None:
        """After the create step: the store now carries the attempt (or there was none)."""
        with self._lock:
            self._reserved.pop(job_id, None)
            self._snapshot = None  # the next decision must see the attempt this reservation stood for

    def in_use(self) -> int:
        """Cores counted against the cap now, read fresh from the store (for metrics)."""
        snap = Snapshot.of(self.store.jobs(SNAPSHOT_STATES))
        with self._lock:
            return sum({**snap.holding, **self._reserved}.values())


_GATES: weakref.WeakKeyDictionary[JobLedger, CoreGate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def gate_for(store: JobLedger) -> CoreGate:
    """The one gate of this store in this process."""
    with _GATES_LOCK:
        gate = _GATES.get(store)
        if gate is None:
            gate = _GATES[store] = CoreGate(store)
        return gate


def cloud_cores(ctx: Context) -> tuple[int, int | None]:
    """(cores in use, the cap) for the metrics gauges."""
    return gate_for(ctx.store).in_use(), ctx.config.agent.max_cloud_cores


def refuse_oversized(ctx: Context, job: JobRecord) -> None:
    """Fail a job bigger than the whole cap before its inputs travel (it could never run)."""
    decision = Decision(provisioned_cores(job), 0, 0, ctx.config.agent.max_cloud_cores)
    if decision.too_big:
        raise PermanentJobError(too_big_reason(decision), stage="create")


def admit(ctx: Context, job: JobRecord, create: Step) -> JobRecord:
    """Run `create` if the job's cores fit under agent.max_cloud_cores now; else hold the job."""
    cap = ctx.config.agent.max_cloud_cores
    if cap is None:  # no cap (perhaps since a reload): nothing to count
        return create(ctx, leave_hold(ctx, job))
    gate = gate_for(ctx.store)
    decision = gate.try_reserve(job, cap)
    if decision.too_big:
        raise PermanentJobError(too_big_reason(decision), stage="create")
    if not decision.admit:
        return _hold(ctx, job, decision)
    try:
        return create(ctx, leave_hold(ctx, job))
    finally:
        gate.release(job.id)


def _hold(ctx: Context, job: JobRecord, decision: Decision) -> JobRecord:
    return hold(ctx, job, waiting_reason(decision), "waiting for cloud cores", needs=decision.needs,
                in_use=decision.in_use, ahead=decision.ahead, cap=decision.cap)
