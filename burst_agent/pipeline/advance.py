"""Drive one job as far as it can go now: a table of steps by state, cancel checked first."""

from __future__ import annotations

from collections.abc import Callable

from burst_agent.lifecycle import REMOTE_ACTIVE, JobState
from burst_agent.pipeline import corecap
from burst_agent.pipeline.cancel import cancel_step
from burst_agent.pipeline.collect import collect
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.intake import translate_job
from burst_agent.pipeline.submit import create, stage_inputs, tag_assign_submit
from burst_agent.store import JobRecord

Step = Callable[[Context, JobRecord], JobRecord]


def _stage(ctx: Context, job: JobRecord) -> JobRecord:
    corecap.refuse_oversized(ctx, job)  # before its inputs travel: it could never run
    return stage_inputs(ctx, job)


def _staging_in(ctx: Context, job: JobRecord) -> JobRecord:
    return corecap.admit(ctx, job, create) if job.input_file_ids else _stage(ctx, job)


# The agent's own work per state; SUBMITTED/QUEUED/RUNNING move only when the watch sees Rescale move.
STEPS: dict[JobState, Step] = {
    JobState.RECEIVED: translate_job,
    JobState.TRANSLATED: _stage,
    JobState.STAGING_IN: _staging_in,
    JobState.CREATED: tag_assign_submit,
    JobState.STAGING_OUT: collect,
}
ACTIONABLE: frozenset[JobState] = frozenset(STEPS)


def advance(ctx: Context, job: JobRecord, *, stopping: Callable[[], bool] = lambda: False) -> JobRecord:
    """Run steps until the job waits on Rescale or for cloud cores, ends, or the agent is stopping."""
    while not job.terminal and not stopping():
        if job.cancel_requested_at is not None:
            job = cancel_step(ctx, job)
            if job.terminal or job.state in REMOTE_ACTIVE:
                return job
        step = STEPS.get(job.state)
        if step is None:
            return job
        job = step(ctx, job)
        if corecap.waiting(job):  # held under agent.max_cloud_cores: the next dispatch asks again
            return job
    return job
