"""Capacity failover: a remote job Rescale could not place runs again on the plan's next coretype.

Rescale ends a job it cannot place "Completed" with a status reason such as "could not allocate compute
resources", without it ever executing. The plan keeps the next cheapest coretypes that fit (decided at
translation, failover.fallbacks); such a job goes back to STAGED on its next attempt and is created
again under the attempt's key (record.attempt_key), so an interrupted create is still found, never
made twice. A coretype that failed failover.cooldown_after times within failover.cooldown_window_s is
skipped for new jobs for failover.cooldown_s.
"""

from __future__ import annotations

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.collect import append_log
from burst_agent.pipeline.context import Context
from burst_agent.record import JobRecord, Remote, on_attempt, plan_of


def no_capacity(reason: str | None, patterns: tuple[str, ...]) -> bool:
    """Whether a remote status reason says Rescale found no capacity for the job."""
    text = (reason or "").lower()
    return any(pattern.lower() in text for pattern in patterns)


def attempts(job: JobRecord) -> int:
    """How many hardware choices the job's plan has: the first and its fallbacks."""
    return 1 + len(job.plan.fallbacks) if job.plan is not None else 1


def _next_attempt(job: JobRecord, after: int, cooling: dict[str, float]) -> int | None:
    """The first attempt after `after` whose coretype is not cooling down, else the next one, else None."""
    later = range(after + 1, attempts(job))
    return next((n for n in later if plan_of(on_attempt(job, n)).coretype not in cooling),
                later[0] if later else None)


def for_new_job(ctx: Context, job: JobRecord) -> JobRecord:
    """The job (not yet created) on its first attempt whose coretype is not cooling down: the record as
    it will be created (the CREATING transition stores the attempt); unchanged if none is cooling."""
    cooling = ctx.cooldown.cooling(ctx.clock())
    if plan_of(job).coretype not in cooling:
        return job
    later = _next_attempt(job, job.attempt, cooling)
    moved = job if later is None else on_attempt(job, later)
    if plan_of(moved).coretype in cooling:
        return job  # every choice is cooling down: the job still goes, on its own
    if job.state is JobState.STAGED:  # said once: a held job asks again at every dispatch
        ctx.job_log(job).info("coretype cooling down after capacity failures: skipped",
                              coretype=plan_of(job).coretype, instead=plan_of(moved).coretype)
    return moved


def rerouted(ctx: Context, job: JobRecord) -> JobRecord | None:
    """STAGING_OUT -> STAGED on the next attempt if Rescale could not place the remote job; else None."""
    cfg = ctx.config.failover
    if job.cancel_requested_at is not None or job.remote.started_at is not None \
            or not no_capacity(job.remote.reason, cfg.reasons):
        return None
    now, failed = ctx.clock(), plan_of(job).coretype
    ctx.metrics.capacity_failover(failed)
    if ctx.cooldown.failed(failed, now):
        ctx.log.warning("coretype cooling down: skipped for new jobs", coretype=failed,
                        failures=cfg.cooldown_after, window_s=cfg.cooldown_window_s, for_s=cfg.cooldown_s)
    later = _next_attempt(job, job.attempt, ctx.cooldown.cooling(now))
    if later is None:
        return None  # no fallback left: the job ends with Rescale's reason
    moved = on_attempt(job, later)
    nxt = plan_of(moved)
    note = (f"Rescale could not place the job on {failed} ({job.remote.reason}): trying {nxt.hardware}"
            f" (attempt {later + 1} of {attempts(job)})")
    log = ctx.job_log(job)
    log.warning("capacity failover", failed=failed, remote_job=job.remote_job_id, next=nxt.coretype,
                attempt=later + 1)
    job = ctx.transition(job, JobState.STAGED, note, remote_job_id=None,
                         remote=Remote(attempt=later))
    try:
        append_log(plan_of(job).stdout_path, f"burst-agent: {note}\n".encode())
    except OSError as exc:  # told or not, the record shows the failover
        log.warning("cannot write to the job's output file", error=str(exc))
    return job
