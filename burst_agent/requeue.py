"""Requeue, as the relay sees it: a run ended for a requeue leaves its remote job running, and the
job's next run re-attaches to it (the same key: cluster, scheduler job id, array task).

Slurm requeues a job after its node failed (JobRequeue), on `scontrol requeue`, or for preemption.
The run being ended gets SIGTERM like a scancel; what tells them apart is the job's restart count:
`scontrol show job` says Restarts=N+1 while SLURM_RESTART_COUNT of the run is N.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Mapping

from burst_agent.dialects.record import Dialect
from burst_agent.dialects.registry import DIALECTS

QUERY_TIMEOUT_S = 15.0
# squeue %T states of a job that is back in the queue or running again (a requeue), not ended.
BACK = frozenset({"PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
                  "SUSPENDED"})
Run = Callable[[list[str]], str | None]


def _run(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _dialect(environ: Mapping[str, str]) -> Dialect | None:
    return next((d for d in DIALECTS.values()
                 if d.restart_var and d.job_id_var and environ.get(d.job_id_var)), None)


def restart_count(environ: Mapping[str, str]) -> int:
    """How many times this run's job was requeued before it (0 for a first run or no scheduler)."""
    d = _dialect(environ)
    value = environ.get(d.restart_var or "", "") if d else ""
    return int(value) if value.isdigit() else 0


def being_requeued(environ: Mapping[str, str], run: Run = _run) -> bool:
    """Whether the scheduler is ending this run to requeue the job (then nothing is cancelled)."""
    d = _dialect(environ)
    if d is None or d.restarts_query is None or d.job_id_var is None:
        return False
    out = run([a.format(job_id=environ[d.job_id_var]) for a in d.restarts_query])
    found = re.search(d.restarts_pattern, out or "")
    return found is not None and int(found.group(1)) > restart_count(environ)


def came_back(scheduler: str, job_id: str, run: Run = _run, wait_s: float = 30.0,
              sleep: Callable[[float], None] = time.sleep) -> bool:
    """After a run ended (the epilog): whether the job is queued or running again, i.e. requeued. The
    job shows COMPLETING until its epilogs finish, so this waits up to `wait_s` for it to settle."""
    query = DIALECTS[scheduler].state_query if scheduler in DIALECTS else None
    if query is None:
        return False
    deadline = time.monotonic() + wait_s
    while True:
        state = (run([a.format(job_id=job_id) for a in query]) or "").strip().split("\n")[0].strip()
        if state != "COMPLETING" or time.monotonic() > deadline:
            return state in BACK
        sleep(1.0)
