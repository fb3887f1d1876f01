"""Drive one job as far as it can go now: a table of steps by state, cancel checked first."""

from __future__ import annotations

from collections.abc import Callable

from burst_agent.lifecycle import REMOTE_ACTIVE, JobState
from burst_agent.pipeline import corecap, failover, spendcap
from burst_agent.pipeline.cancel import cancel_step
from burst_agent.pipeline.collect import collect
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.hold import hold
from burst_agent.pipeline.intake import translate_job
from burst_agent.pipeline.submit import assign_project, create, stage_inputs, submit, tag
from burst_agent.record import JobRecord

Step = Callable[[Context, JobRecord], JobRecord]


def _stage(ctx: Context, job: JobRecord) -> JobRecord:
    corecap.refuse_oversized(ctx, job)  # before its inputs travel: it could never run
    return stage_inputs(ctx, job)


def _admit(ctx: Context, job: JobRecord) -> JobRecord:
    job = failover.for_new_job(ctx, job)  # its attempt is stored by the CREATING transition
    held = spendcap.held_for_spend(ctx, job)  # the account's monthly budget, protected mode, cloud cores
    if held is None and not ctx.protection.may_create(ctx.clock()):
        held = hold(ctx, job, ctx.protection.reason(), "protected mode: held before create")
    return held if held is not None else corecap.admit(ctx, job, create)


def _collect(ctx: Context, job: JobRecord) -> JobRecord:
    return failover.rerouted(ctx, job) or collect(ctx, job)


# The agent's own work per state. The remote-active states move only when the watch sees Rescale move
# (or, with a cancel, through cancel_step); the terminal states have no step.
STEPS: dict[JobState, Step] = {
    JobState.RECEIVED: translate_job,
    JobState.TRANSLATED: _stage,
    JobState.STAGING_IN: _stage,
    JobState.STAGED: _admit,
    JobState.HELD: _admit,
    JobState.CREATING: create,
    JobState.CREATED: tag,
    JobState.TAGGED: assign_project,
    JobState.PROJECT_SET: submit,
    JobState.SUBMITTING: submit,
    JobState.STAGING_OUT: _collect,
}
ACTIONABLE: frozenset[JobState] = frozenset(STEPS)


def advance(
    ctx: Context, job: JobRecord, *, stopping: Callable[[], bool] = lambda: False,
    may_step: Callable[[JobRecord], bool] = lambda job: True,
) -> JobRecord:
    """Run steps until the job waits on Rescale, for cloud cores or for its turn (`may_step` says no:
    the dispatcher's rate budgets), ends, or the agent is stopping."""
    while not job.terminal and not stopping():
        if job.cancel_requested_at is not None:
            job = cancel_step(ctx, job)
            if job.terminal or job.state in REMOTE_ACTIVE:
                return job
        step = STEPS.get(job.state)
        if step is None or not may_step(job):
            return job
        job = step(ctx, job)
        if corecap.waiting(job):  # held (cloud cores, spent budget): the next dispatch asks again
            return job
    return job
