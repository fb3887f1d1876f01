"""No orphans: a relay that went silent and whose scheduler job is gone gets its remote job stopped."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

from burst_agent.pipeline.cancel import request_cancel
from burst_agent.pipeline.context import Context

# squeue %T states after which the job (and so its relay) is gone for good.
ENDED = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "TIMEOUT",
})


def slurm_job_alive(job_id: str) -> bool | None:
    """True/False from squeue; None when this host has no squeue or it does not answer."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        done = subprocess.run([squeue, "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                              timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:  # "Invalid job id specified": purged from slurmctld's memory
        return False if "Invalid job id" in done.stderr else None
    state = done.stdout.strip().split("\n")[0].strip()
    return bool(state) and state not in ENDED


class OrphanCheck:
    """Remembers when each relay last asked; the agent's start counts as a sighting."""

    def __init__(
        self, last_seen: dict[str, float], alive: Callable[[str], bool | None] = slurm_job_alive
    ) -> None:
        self.last_seen = last_seen
        self.started = time.monotonic()
        self.alive = alive

    def cycle(self, ctx: Context) -> int:
        grace, now, stopped = ctx.config.agent.relay_grace_s, time.monotonic(), 0
        for job_id, scheduler_job_id in ctx.store.relay_watch():
            silent = now - self.last_seen.get(job_id, self.started)
            if silent < grace or not scheduler_job_id:
                continue
            try:
                stopped += self._check(ctx, job_id, scheduler_job_id, silent, grace)
            except Exception as exc:  # one job's trouble must not spare the others their check
                ctx.log.warning("orphan check of one job failed", job=job_id, error=str(exc),
                                error_type=type(exc).__name__)
        return stopped

    def _check(self, ctx: Context, job_id: str, scheduler_job_id: str, silent: float, grace: float) -> int:
        alive = self.alive(scheduler_job_id)
        if alive is False or (alive is None and silent > 10 * grace):
            job = request_cancel(ctx.store, job_id, ctx.clock())
            ctx.job_log(job).warning("relay gone and its scheduler job ended: stopping the remote job",
                                     silent_s=round(silent), scheduler_alive=alive)
            return 1
        return 0
