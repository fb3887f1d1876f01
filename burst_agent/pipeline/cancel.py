"""Cancel: stop the remote job at once, escalate to force-stop after the grace period."""

from __future__ import annotations

from burst_agent.lifecycle import REMOTE_ACTIVE, JobState
from burst_agent.pipeline.context import Context
from burst_agent.store import JobRecord, JobStore, UnknownJob

# Before a create was even attempted nothing can run remotely: the job can end at once.
_LOCAL_ONLY = frozenset({JobState.RECEIVED, JobState.TRANSLATED, JobState.STAGING_IN})


def request_cancel(store: JobStore, job_ref: str, now: float) -> JobRecord:
    """Mark a job (local id or spool entry name) for cancellation; the agent acts on its next tick."""
    job = store.get(job_ref) or store.by_entry(job_ref)
    if job is None:
        raise UnknownJob(job_ref)
    if job.terminal or job.cancel_requested_at is not None:
        return job
    return store.update(job.id, cancel_requested_at=now)


def _end(ctx: Context, job: JobRecord, reason: str) -> JobRecord:
    job = ctx.finish(job, JobState.CANCELLED, reason)
    ctx.spool.retire(job.entry)
    ctx.job_log(job).info("job cancelled", reason=reason)
    return job


def cancel_step(ctx: Context, job: JobRecord) -> JobRecord:
    """One step towards CANCELLED; remote jobs end through watch + collect once Rescale stops them."""
    remote_id = job.remote_job_id
    if job.state in _LOCAL_ONLY and job.create_attempted_at is None:
        return _end(ctx, job, "cancelled before the remote job existed")
    if remote_id and job.state is JobState.CREATED and job.submit_attempted_at is None:
        ctx.client.delete_job(remote_id)
        return _end(ctx, job, "cancelled before submit; the saved remote job was deleted")
    if remote_id and job.state in REMOTE_ACTIVE:
        if job.stop_requested_at is None:
            ctx.client.stop_job(remote_id)
            ctx.job_log(job).info("remote stop requested")
            return ctx.store.update(job.id, stop_requested_at=ctx.clock())
        if ctx.clock() - job.stop_requested_at > ctx.config.agent.stop_grace_s:
            ctx.client.force_stop_job(remote_id)
            ctx.job_log(job).warning("still running after the grace period: force stop requested")
            return ctx.store.update(job.id, stop_requested_at=ctx.clock())
    return job
