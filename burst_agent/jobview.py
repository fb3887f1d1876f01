"""What `status` shows of a job: shape, age, estimated cost so far (pure)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from burst_agent.record import JobRecord, plan_or_none


def hardware(job: JobRecord) -> str:
    plan = plan_or_none(job)
    return plan.hardware if plan else "-"


def cost_so_far(job: JobRecord, now: float) -> Decimal | None:
    """price per core-hour x cores x slots x hours the cluster has run (start to finish or now)."""
    started, plan = job.remote.started_at, plan_or_none(job)
    if plan is None or started is None:
        return None
    hours = Decimal(max(0.0, (job.remote.finished_at or now) - started)) / 3600
    return (plan.price_per_core_hour * plan.cores * hours).quantize(Decimal("0.0001"))


def size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def transfer(job: JobRecord) -> str | None:
    """"3.2 GB / 10.0 GB (32%)" while the job's inputs or outputs are moving, else None."""
    done, total = job.progress.transfer_done, job.progress.transfer_total
    if not total:
        return None
    return f"{size(done)} / {size(total)} ({100 * done // total}%)"


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def as_dict(job: JobRecord, now: float) -> dict[str, Any]:
    cost = cost_so_far(job, now)
    return {
        "id": job.id, "entry": job.entry, "scheduler_job_id": job.origin.scheduler_job_id,
        "owner": job.origin.owner_name or str(job.owner_uid), "remote_job_id": job.remote_job_id,
        "state": job.state.value, "remote_status": job.remote.status, "hardware": hardware(job),
        "age_s": round(now - job.created_at, 1), "estimated_cost": str(cost) if cost is not None else None,
        "exit_code": job.result.exit_code, "reason": job.result.reason, "transfer": transfer(job),
    }
