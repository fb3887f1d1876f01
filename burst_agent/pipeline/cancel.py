"""Cancel: stop the remote job at once, escalate to force-stop after the grace period; end vanished jobs."""

from __future__ import annotations

from collections.abc import Callable

from burst_agent.lifecycle import REMOTE_ACTIVE, JobState
from burst_agent.pipeline.context import Context
from burst_agent.rescale.errors import NotFoundError
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


def vanished_reason(remote_id: str | None) -> str:
    return f"the remote job {remote_id} no longer exists on Rescale (deleted there?)"


def remote_gone(ctx: Context, remote_id: str) -> bool:
    """True if Rescale has no such job: its statuses answer 404 (any other error propagates).

    A 404 from another per-job endpoint (stop, files, runs, tags) is confirmed here first, so that one
    odd answer of a side endpoint never ends a job that still exists.
    """
    try:
        ctx.client.job_statuses(remote_id)
    except NotFoundError:
        return True
    return False


def end_vanished(ctx: Context, job: JobRecord) -> JobRecord:
    """End a job whose remote job is gone: CANCELLED if a cancel was asked for, else FAILED."""
    current = ctx.store.get(job.id)
    if current is None or current.terminal:
        return current or job
    reason = vanished_reason(current.remote_job_id)
    if current.cancel_requested_at is not None:
        reason = f"cancelled; {reason}"
        job = ctx.finish(current, JobState.CANCELLED, reason, failure_reason=reason)
        ctx.spool.retire(job.entry)
        ctx.job_log(job).info("job cancelled", reason=reason)
        return job
    job = ctx.finish(current, JobState.FAILED, reason, reason_class="remote", failure_reason=reason)
    ctx.spool.quarantine(job.entry, reason)
    ctx.job_log(job).warning("job failed", reason=reason)
    return job


def end_if_gone(ctx: Context, job_id: str) -> bool:
    """After a step's 404: True if the job's remote job is gone and the job was ended for it."""
    job = ctx.store.get(job_id)
    if job is None or job.terminal or not job.remote_job_id or not remote_gone(ctx, job.remote_job_id):
        return False
    end_vanished(ctx, job)
    return True


def ended_if_gone(ctx: Context, job: JobRecord, call: Callable[[], None]) -> JobRecord | None:
    """call(); on a 404 the job, ended by end_vanished, if its remote job is indeed gone (else re-raise)."""
    try:
        call()
    except NotFoundError:
        if job.remote_job_id and remote_gone(ctx, job.remote_job_id):
            return end_vanished(ctx, job)
        raise
    return None


def cancel_step(ctx: Context, job: JobRecord) -> JobRecord:
    """One step towards CANCELLED; remote jobs end through watch + collect once Rescale stops them."""
    remote_id = job.remote_job_id
    if job.state in _LOCAL_ONLY and job.create_attempted_at is None:
        return _end(ctx, job, "cancelled before the remote job existed")
    if remote_id and job.state is JobState.CREATED and job.submit_attempted_at is None:
        ended = ended_if_gone(ctx, job, lambda: ctx.client.delete_job(remote_id))
        return ended or _end(ctx, job, "cancelled before submit; the saved remote job was deleted")
    if remote_id and job.state in REMOTE_ACTIVE:
        if job.stop_requested_at is None:
            ended = ended_if_gone(ctx, job, lambda: ctx.client.stop_job(remote_id))
            if ended is not None:
                return ended
            ctx.job_log(job).info("remote stop requested")
            return ctx.store.update(job.id, stop_requested_at=ctx.clock())
        if ctx.clock() - job.stop_requested_at > ctx.config.agent.stop_grace_s:
            ended = ended_if_gone(ctx, job, lambda: ctx.client.force_stop_job(remote_id))
            if ended is not None:
                return ended
            ctx.job_log(job).warning("still running after the grace period: force stop requested")
            return ctx.store.update(job.id, stop_requested_at=ctx.clock())
    return job
