"""Spool housekeeping: the agent's own copies for finished relay jobs expire after a retention period.

A relay job leaves two things in the spool: logs/<entry>.log (the agent's copy of the remote log; the
user's slurm-N.out has the same lines) and results/<entry>/ until the relay has taken the outputs (it
deletes them then; a relay that died never does). Both are pruned once the job has been finished for
`agent.spool_retention_days`. The outputs of plain-script jobs live in results/ too: those are the
only copy the user gets, and are never pruned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from burst_agent.ledger import JobLedger
from burst_agent.spool import Spool

DAY_S = 86400.0


@dataclass
class PruneReport:
    logs: int = 0
    results: int = 0


def _names(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def prune_spool(store: JobLedger, spool: Spool, retention_days: float, now: float) -> PruneReport:
    """Delete expired relay-job copies; `retention_days` 0 keeps everything."""
    report = PruneReport()
    if retention_days <= 0:
        return report
    cutoff = now - retention_days * DAY_S

    def expired(entry: str) -> bool:
        job = store.by_entry(entry)
        return (job is not None and job.terminal and job.updated_at < cutoff
                and job.plan is not None and job.plan.delivery == "relay")

    for name in _names(spool.logs):
        if name.endswith(".log") and expired(name.removesuffix(".log")):
            with contextlib.suppress(OSError):  # one log that will not go must not keep the rest
                (spool.logs / name).unlink()
                report.logs += 1
    for name in _names(spool.results):
        path = spool.results / name
        if path.is_dir() and not path.is_symlink() and expired(name):
            shutil.rmtree(path, ignore_errors=True)
            report.results += 1
    return report
