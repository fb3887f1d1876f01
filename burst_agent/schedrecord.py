"""A burst job's scheduler record of its remote life: phase, Rescale job, shape, window, cost (pure).

The relay puts this text into the job's Comment (Slurm: `squeue -o "%.8i %.10T %k"` while it runs,
`sacct -o JobID,State,ExitCode,Comment%120` afterwards, with AccountingStoreFlags=job_comment). One
line of space-separated `key=value` fields after the phase, so scripts can parse it:

    executing on nickel x4 x1 | rescale=AbCd cores=4 start=2026-12-02T17:00:01Z cost~=0.0123
    completed | rescale=AbCd cores=4 coretype=nickel start=... end=... run_s=301 cost~=0.0500

`cost~=` is the estimate (price per core-hour x cores x hours of the run window, in the catalogue's
currency); `burst-agent report` reconciles it with Rescale's bill where the account can read it.
"""

from __future__ import annotations

import time
from decimal import Decimal

from burst_agent.jobview import cost_so_far
from burst_agent.lifecycle import JobState
from burst_agent.record import JobRecord, plan_or_none

S = JobState

# The phase of a job by its pipeline state; None: by the remote status (REMOTE_PHASES).
PHASES: dict[JobState, str | None] = {
    S.RECEIVED: "preparing", S.TRANSLATED: "preparing", S.STAGING_IN: "uploading inputs",
    S.STAGED: "waiting to create on Rescale", S.HELD: "held: {reason}",
    S.CREATING: "creating on Rescale", S.CREATED: "creating on Rescale", S.TAGGED: "creating on Rescale",
    S.PROJECT_SET: "creating on Rescale", S.SUBMITTING: "submitting to Rescale",
    S.SUBMITTED: "queued on Rescale", S.QUEUED: "queued on Rescale", S.RUNNING: None,
    S.STOPPING: "stopping on Rescale", S.FORCE_STOPPING: "stopping on Rescale",
    S.STAGING_OUT: "collecting outputs", S.DONE: "completed (exit {exit_code})", S.FAILED: "failed: {reason}",
    S.CANCELLED: "cancelled",
}
# Rescale's job statuses (API document, "Job Statuses") while the pipeline says RUNNING.
REMOTE_PHASES: dict[str, str] = {
    "pending": "queued on Rescale", "queued": "queued on Rescale", "started": "starting cluster",
    "validated": "starting cluster", "executing": "executing on {hardware}", "completed": "finishing",
    "stopping": "stopping on Rescale",
}
MAX_TEXT = 250  # a Comment stays one short line in squeue/sacct


def _stamp(at: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)) if at is not None else None


def phase(job: JobRecord) -> str:
    """"executing on nickel x4 x1", "queued on Rescale", "held: ...": where the job is now."""
    template = PHASES[job.state]
    if template is None:
        template = REMOTE_PHASES.get((job.remote.status or "").lower(), "running on Rescale")
    plan = plan_or_none(job)
    hardware = plan.hardware if plan else "?"
    result = job.result
    return template.format(hardware=hardware, reason=result.reason or "no reason given",
                           exit_code="?" if result.exit_code is None else result.exit_code)


def fields(job: JobRecord, now: float) -> dict[str, str]:
    """The record's key=value fields that are known (none before the remote job exists)."""
    plan, remote = plan_or_none(job), job.remote
    cost: Decimal | None = cost_so_far(job, now)
    known = {
        "rescale": job.remote_job_id,
        "coretype": plan.coretype if plan else None,
        "cores": f"{plan.cores_per_slot}x{plan.slots}" if plan else None,
        "start": _stamp(remote.started_at),
        "end": _stamp(remote.finished_at),
        "run_s": str(round(remote.finished_at - remote.started_at))
        if remote.started_at is not None and remote.finished_at is not None else None,
        "cost~": str(cost) if cost is not None else None,
    }
    if job.remote_job_id is None:
        return {}
    return {key: value for key, value in known.items() if value is not None}


def record_text(job: JobRecord, now: float) -> str:
    """The whole Comment: the phase, then the fields ("queued on Rescale | rescale=AbCd ...")."""
    pairs = " ".join(f"{key}={value}" for key, value in fields(job, now).items())
    text = f"{phase(job)} | {pairs}" if pairs else phase(job)
    return " ".join(text.split())[:MAX_TEXT]  # one line whatever a reason holds
