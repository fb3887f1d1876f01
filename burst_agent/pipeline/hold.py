"""Holding a job before its create (STAGED -> HELD with the reason, told once in its output file)."""

from __future__ import annotations

from typing import Any

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.collect import append_log
from burst_agent.pipeline.context import Context
from burst_agent.record import JobRecord, Result, plan_of


def hold(ctx: Context, job: JobRecord, reason: str, event: str, **facts: Any) -> JobRecord:
    """Hold the job with `reason` (updated in place when it changes); tell the user once, on entry."""
    if job.state is JobState.HELD:
        return job if job.result.reason == reason else ctx.store.record_reason(job.id, reason)
    job = ctx.transition(job, JobState.HELD, reason, result=Result(None, reason))
    log = ctx.job_log(job)
    log.info(event, **facts)
    try:
        append_log(plan_of(job).stdout_path, f"burst-agent: {reason}\n".encode())
    except OSError as exc:  # said once or not at all: the record still shows the wait
        log.warning("cannot write to the job's output file", error=str(exc))
    return job


def leave_hold(ctx: Context, job: JobRecord) -> JobRecord:
    """A held job goes on to its create: the reason is cleared."""
    if job.state is not JobState.HELD:
        return job
    ctx.job_log(job).info("no longer held: creating", waited_s=round(ctx.clock() - job.entered_at, 1))
    return ctx.store.record_reason(job.id, None)
