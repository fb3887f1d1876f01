"""The actual cost into sacct: once Rescale's bill has a job, its Slurm record gets `cost=` beside the
estimate. Rescale bills hours after the job ended, when the relay (the job's owner, the only one
who may set an ended job's Comment besides a Slurm operator) is long gone, so this runs as root or
as SlurmUser (`burst-agent sacct-sync`, from cron). It writes only a job whose Slurm record matches
the agent's: the same owner, submitted before the agent had the job (a reused job id is another job).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from burst_agent.billing import ActualCost
from burst_agent.dialects.registry import SLURM
from burst_agent.record import JobRecord
from burst_agent.schedrecord import MAX_TEXT, record_text

SACCT = ("sacct", "-X", "-n", "-P", "-j", "{job_id}", "-o", "JobIDRaw,UID,Submit,Comment")
SUBMIT_SLACK_S = 60.0  # the clocks of slurmctld and the agent's host may differ a little
Run = Callable[[list[str]], str | None]


@dataclass(frozen=True)
class SlurmRow:
    """One sacct allocation line: its raw id, owner, submit time (Unix) and Comment."""

    job_id: str
    uid: int
    submitted: float
    comment: str


def parse_rows(text: str) -> list[SlurmRow]:
    """sacct -P lines (JobIDRaw|UID|Submit|Comment); a line it cannot read is skipped."""
    rows = []
    for line in text.splitlines():
        parts = line.split("|", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            continue
        try:
            submitted = calendar.timegm(time.strptime(parts[2], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            continue
        rows.append(SlurmRow(parts[0], int(parts[1]), float(submitted), parts[3]))
    return rows


def matching(job: JobRecord, rows: Iterable[SlurmRow]) -> SlurmRow | None:
    """The Slurm record of `job`: its owner's, submitted before the agent received it (the newest such)."""
    fits = [r for r in rows if r.uid == job.owner_uid and r.submitted <= job.created_at + SUBMIT_SLACK_S]
    return max(fits, key=lambda r: r.submitted, default=None)


def with_actual(job: JobRecord, actual: ActualCost, now: float) -> str:
    """The job's final record with what Rescale billed it (`cost=`) beside the estimate (`cost~=`)."""
    return " ".join(f"{record_text(job, now)} cost={actual.charge}".split())[:MAX_TEXT]


def updates(jobs: Iterable[JobRecord], actuals: Mapping[str, ActualCost],
            lookup: Callable[[str], list[SlurmRow]], now: float) -> list[tuple[str, str]]:
    """(raw Slurm job id, Comment) for each ended Slurm job that is billed and whose record lacks it."""
    found = []
    for job in jobs:
        actual = actuals.get(job.remote_job_id or "")
        sid = job.origin.scheduler_job_id
        if not job.terminal or actual is None or not sid or job.plan is None or job.plan.scheduler != "slurm":
            continue
        row = matching(job, lookup(sid))
        if row is None or f"cost={actual.charge}" in row.comment:
            continue
        found.append((row.job_id, with_actual(job, actual, now)))
    return found


def sync(jobs: Iterable[JobRecord], actuals: Mapping[str, ActualCost], run: Run, now: float,
         dry_run: bool = False) -> list[tuple[str, str, bool]]:
    """Write each update with sacctmgr (the dialect's keep_record); (job id, text, written) for each."""
    def lookup(job_id: str) -> list[SlurmRow]:
        return parse_rows(run([a.format(job_id=job_id) for a in SACCT]) or "")

    assert SLURM.keep_record is not None  # narrowing: Slurm keeps records
    done = []
    for job_id, text in updates(jobs, actuals, lookup, now):
        ok = dry_run or run([a.format(job_id=job_id, text=text) for a in SLURM.keep_record]) is not None
        done.append((job_id, text, ok))
    return done
