"""Job store benchmark: N tracked jobs, then time a restart (reopen + non_terminal()) and report RSS.

Run:  .venv/bin/python benchmarks/store_bench.py [--jobs 10000] [--dir /tmp/x] [--fsync-sample 200]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from burst_agent.lifecycle import JobState
from burst_agent.record import Inputs, Origin, Plan
from burst_agent.store import JobStore

S = JobState
# Most jobs sit in an active state (the worst case for a restart); a few are somewhere else.
ACTIVE_PATH = (S.TRANSLATED, S.STAGING_IN, S.STAGED, S.CREATING, S.CREATED, S.TAGGED, S.SUBMITTING,
               S.SUBMITTED, S.RUNNING)
BODY = {"name": "bench", "jobanalyses": [{
    "command": "bash ./burst_job.sh", "hardware": {"coreType": "emerald", "coresPerSlot": 4, "slots": 1},
    "analysis": {"code": "user_included", "version": "0"}}]}


def _plan(i: int) -> Plan:
    workdir = f"/home/user{i % 50}/run{i}"
    return Plan(scheduler="slurm", delivery="direct", workdir=workdir, inputs_from=workdir,
                output_dir=workdir, stdout_path=f"{workdir}/slurm-{100000 + i}.out", stderr_path=None,
                script="#!/bin/bash\n", body=BODY, coretype="emerald", cores_per_slot=4, slots=1,
                price_per_core_hour=Decimal("0.0425"))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def populate(path: Path, jobs: int) -> float:
    started = time.perf_counter()
    # NORMAL: population speed is not what is measured here; the restart below uses the default (FULL).
    with JobStore(path, synchronous="NORMAL") as store:
        for i in range(jobs):
            rec = store.add_job(
                entry=f"20240101T000000-{i:08x}", reconcile_key=f"burst-bench-{i}", origin=Origin(
                    owner_uid=1000 + i % 50, owner_name=f"user{i % 50}", scheduler_job_id=str(100000 + i),
                    partition="rescale"),
            )
            inputs = Inputs(file_ids=(f"F{i}", "FSHARED"), md5s={}, placement="", cached={})
            at = {S.TRANSLATED: {"plan": _plan(i)}, S.STAGED: {"inputs": inputs},
                  S.CREATED: {"remote_job_id": f"R{i:07d}"}}
            for state in ACTIVE_PATH if i % 10 else (S.FAILED,):
                store.transition(rec.id, state, "bench", **at.get(state, {}))
    return time.perf_counter() - started


def fsync_sample(path: Path, n: int) -> float:
    """Seconds per add_job + one transition with synchronous=FULL (what the daemon pays per job step)."""
    with JobStore(path) as store:
        started = time.perf_counter()
        for i in range(n):
            rec = store.add_job(entry=f"fs-{i}", reconcile_key=f"burst-fs-{i}", origin=Origin(owner_uid=1))
            store.transition(rec.id, S.TRANSLATED, "bench", plan=_plan(i))
        return (time.perf_counter() - started) / max(n, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="database directory (default: temp)")
    parser.add_argument("--fsync-sample", type=int, default=200, help="FULL-sync pairs to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "state.db"
        created = populate(path, args.jobs)
        rss_before = rss_mib()
        started = time.perf_counter()
        store = JobStore(path)
        opened = time.perf_counter()
        active = store.non_terminal()
        loaded = time.perf_counter()
        remote = store.active_remote()
        counted = store.counts_by_state()
        done = time.perf_counter()
        store.close()
        size_mib = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
        per_job = fsync_sample(Path(tmp) / "fsync.db", args.fsync_sample)
    print(f"jobs created:              {args.jobs} in {created:.1f} s (synchronous=NORMAL)")
    print(f"database size:             {size_mib:.1f} MiB")
    print(f"reopen:                    {(opened - started) * 1000:.1f} ms")
    print(f"non_terminal():            {(loaded - opened) * 1000:.1f} ms ({len(active)} records)")
    print(f"active_remote()+counts:    {(done - loaded) * 1000:.1f} ms ({len(remote)} remote, "
          f"{sum(counted.values())} counted)")
    print(f"restart total:             {(loaded - started) * 1000:.1f} ms (target: well under 5000 ms)")
    print(f"RSS before/after restart:  {rss_before:.1f} / {rss_mib():.1f} MiB "
          f"(peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB)")
    print(f"FULL-sync add+transition:  {per_job * 1000:.2f} ms per pair ({args.fsync_sample} sampled)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
