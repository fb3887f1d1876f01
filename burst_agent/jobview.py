"""What `status` shows of a job: shape, age, estimated cost so far (pure)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from burst_agent.store import JobRecord


def hardware(job: JobRecord) -> str:
    if not job.coretype:
        return "-"
    return f"{job.coretype} x{job.cores_per_slot} x{job.slots}"


def cores(job: JobRecord) -> int:
    """Cores the job holds on Rescale: cores per slot x slots (a job has at least one slot)."""
    return (job.cores_per_slot or 0) * (job.slots or 1)


def cost_so_far(job: JobRecord, now: float) -> Decimal | None:
    """price per core-hour x cores x slots x hours the cluster has run (start to finish or now)."""
    if job.price_per_core_hour is None or job.remote_started_at is None:
        return None
    end = job.remote_finished_at or now
    hours = Decimal(max(0.0, end - job.remote_started_at)) / 3600
    return (job.price_per_core_hour * cores(job) * hours).quantize(Decimal("0.0001"))


def size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def transfer(job: JobRecord) -> str | None:
    """"3.2 GB / 10.0 GB (32%)" while the job's inputs or outputs are moving, else None."""
    if not job.transfer_total:
        return None
    percent = 100 * job.transfer_done // job.transfer_total
    return f"{size(job.transfer_done)} / {size(job.transfer_total)} ({percent}%)"


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def as_dict(job: JobRecord, now: float) -> dict[str, Any]:
    cost = cost_so_far(job, now)
    return {
        "id": job.id, "entry": job.entry, "scheduler_job_id": job.scheduler_job_id,
        "owner": job.owner_name or str(job.owner_uid), "remote_job_id": job.remote_job_id,
        "state": job.state.value, "remote_status": job.remote_status, "hardware": hardware(job),
        "age_s": round(now - job.created_at, 1), "estimated_cost": str(cost) if cost is not None else None,
        "exit_code": job.exit_code, "reason": job.failure_reason, "transfer": transfer(job),
    }
