"""Cancel: stop the remote job at once, escalate to force-stop after the grace period; end vanished jobs."""

from __future__ import annotations

from collections.abc import Callable

from burst_agent.ledger import JobLedger
from burst_agent.lifecycle import LOCAL_ONLY, UNSUBMITTED, JobState
from burst_agent.pipeline.context import Context
from burst_agent.record import JobRecord
from burst_agent.rescale.errors import NotFoundError
from burst_agent.store import UnknownJob

_STOP = ("stop_job", JobState.STOPPING, "info", "remote stop requested")
_FORCE = ("force_stop_job", JobState.FORCE_STOPPING, "warning",
          "still running after the grace period: force stop requested")
# Cancel in a live remote state: the call to send, the state it leads to, and how it is logged.
STOPS: dict[JobState, tuple[str, JobState, str, str]] = {
    JobState.SUBMITTED: _STOP, JobState.QUEUED: _STOP, JobState.RUNNING: _STOP,
    JobState.STOPPING: _FORCE, JobState.FORCE_STOPPING: _FORCE,
}
# A stop already sent waits out agent.stop_grace_s (from entering its state) before the next one.
_AFTER_GRACE = frozenset({JobState.STOPPING, JobState.FORCE_STOPPING})


def request_cancel(store: JobLedger, job_ref: str, now: float) -> JobRecord:
    """Mark a job (local id or spool entry name) for cancellation; the agent acts on its next tick."""
    job = store.get(job_ref) or store.by_entry(job_ref)
    if job is None:
        raise UnknownJob(job_ref)
    if job.terminal or job.cancel_requested_at is not None:
        return job
    return store.request_cancel(job.id, now)


def _end(ctx: Context, job: JobRecord, reason: str) -> JobRecord:
    job = ctx.finish(job, JobState.CANCELLED, reason)
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
        ctx.job_log(job).info("job cancelled", reason=reason)
        return job
    job = ctx.finish(current, JobState.FAILED, reason, reason_class="remote", failure_reason=reason,
                     quarantine=True)
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
    """One step towards CANCELLED; remote jobs end through watch + collect once Rescale stops them.

    CREATING and SUBMITTING first finish their step (advance runs it next): only then is it known
    whether a remote job exists, or was submitted.
    """
    remote_id = job.remote_job_id
    if job.state in LOCAL_ONLY:
        return _end(ctx, job, "cancelled before the remote job existed")
    if remote_id and job.state in UNSUBMITTED:
        ended = ended_if_gone(ctx, job, lambda: ctx.client.delete_job(remote_id))
        return ended or _end(ctx, job, "cancelled before submit; the saved remote job was deleted")
    if not remote_id or job.state not in STOPS:
        return job
    if job.state in _AFTER_GRACE and ctx.clock() - job.entered_at <= ctx.config.agent.stop_grace_s:
        return job
    call, then, level, message = STOPS[job.state]
    ended = ended_if_gone(ctx, job, lambda: getattr(ctx.client, call)(remote_id))
    if ended is not None:
        return ended
    getattr(ctx.job_log(job), level)(message)
    return ctx.transition(job, then, message)
