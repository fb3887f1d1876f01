"""1,000 queued spool entries: time until every one is created and submitted on the emulator.

The agent runs as a real process (`burst-agent run`); the emulator runs as a separate process with no
injected latency. Its step is an hour (never, within a run), so submitted jobs sit in Pending and no
remote command competes for the CPU: what is measured is the agent's intake -> translate -> upload ->
create -> tag -> submit pipeline. Each entry is a Slurm script with its own workdir and a 1 KiB input.
The clock starts when the first entry is written (the agent is already up and idle) and stops when
the agent's state DB shows every job in `submitted` or beyond.

--budget-scale K (default 60) runs under Rescale's default budgets with every hourly limit x K (bursts
as they are): the job-submission scope (1,000/h x 0.85) is the ceiling, and rates are reported in real
time (measured jobs/s x 3600 / K). "Sustained" is the second half of the submissions (the burst spent).
--budget-scale lifted turns the budgets off (the pipeline's own speed; target < 30 s).

Run:  .venv/bin/python benchmarks/agent_submit_bench.py [--entries 1000] [--workers default,8]
      [--budget-scale 60]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from agentbench import (
    PY,
    SCRIPT,
    TOKEN,
    AgentProcess,
    add_budget_scale,
    budgets_label,
    cpu_seconds,
    first_transitions,
    machine,
    profile_summary,
    real_per_hour,
    scale_flag,
    scaled_rate_limits,
    start_profiler,
    stop_profiler,
    table,
    wait_for,
    write_config,
)

from burst_agent.config import AgentConfig, RateLimits
from burst_agent.lifecycle import JobState
from burst_agent.rescale.emulator import spawn_emulator_process
from burst_agent.spool import Spool, submit_entry

TARGET_S = 30.0  # budgets lifted: the pipeline's own speed
TARGET_PER_HOUR = 800.0  # under the default budgets: of the 850/h the job-submission scope allows
PAST_SUBMIT = tuple(s.value for s in (JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING,
                                      JobState.STAGING_OUT, JobState.DONE))
TIMEOUT_S = 150.0


@dataclass
class Result:
    workers: int
    write_s: float
    recorded_s: float
    first_submitted_s: float
    all_submitted_s: float
    failed: int
    agent_cpu_s: float
    emulator_cpu_s: float
    requests: dict[str, int]
    submitted_at: list[float]  # when each job reached `submitted` (store clock), sorted


def sustained_per_s(times: list[float], burst: int) -> float | None:
    """Submissions per second over the second half of the run (at least `burst` in: what was saved up,
    and what refilled while the pipeline spent it, is gone by then); None when too few to tell."""
    skip = max(burst, len(times) // 2)
    if len(times) < skip + 10:
        return None
    return (len(times) - 1 - skip) / (times[-1] - times[skip])


def per_window(times: list[float], window: float) -> list[int]:
    """How many submissions fell in each `window` seconds from the first one."""
    counts: list[int] = []
    for t in times:
        slot = int((t - times[0]) // window)
        counts += [0] * (slot + 1 - len(counts))
        counts[slot] += 1
    return counts


def timeout_s(entries: int, budget_scale: float | None) -> float:
    """Three times what the job-submission scope needs for `entries`, and at least TIMEOUT_S."""
    if budget_scale is None:
        return TIMEOUT_S
    limits = scaled_rate_limits(budget_scale)
    rate = limits.job_submission_per_hour * limits.target_fraction / 3600.0
    return max(TIMEOUT_S, 3 * max(0, entries - limits.job_submission_burst) / rate + 60)


def _counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    finally:
        conn.close()


def run_once(entries: int, workers: int | None, budget_scale: float | None,
             profile: Path | None = None) -> Result:
    root = Path(tempfile.mkdtemp(prefix="burst-submit-bench-"))
    emulator = spawn_emulator_process(root / "emulator", TOKEN, step_seconds=3600)
    agent = None
    try:
        config = write_config(root, emulator.url, agent={"workers": workers} if workers else None,
                              budget_scale=budget_scale)
        work = root / "work"
        for i in range(entries):  # prepared before the clock starts: users' workdirs already exist
            (work / f"j{i}").mkdir(parents=True)
            (work / f"j{i}" / "input.txt").write_bytes(f"{i:08d}".encode() * 128)
        spool = Spool(root / "spool").ensure()
        agent = AgentProcess(config, root / "agent.log")
        agent.wait_event("agent running")
        db = root / "state.db"
        cpu0, emu_cpu0 = cpu_seconds(agent.pid), cpu_seconds(emulator.pid)
        marks: dict[str, float] = {}

        def write_all() -> None:
            for i in range(entries):
                submit_entry(spool, SCRIPT.format(i=i), {"workdir": str(work / f"j{i}"), "job_id": str(i)})
            marks["written"] = time.monotonic() - started

        writer = threading.Thread(target=write_all, name="writer")
        started = time.monotonic()
        writer.start()
        profiler = start_profiler(agent.pid, profile) if profile else None

        def progress() -> bool:
            counts = _counts(db)
            now = time.monotonic() - started
            done = sum(counts.get(s, 0) for s in PAST_SUBMIT)
            if sum(counts.values()) >= entries:
                marks.setdefault("recorded", now)
            if done:
                marks.setdefault("first", now)
            failed = counts.get(JobState.FAILED.value, 0)
            if done + failed >= entries:
                marks["all"], marks["failed"] = now, failed
                return True
            return False

        try:
            wait_for(progress, timeout_s(entries, budget_scale), f"{entries} jobs submitted", step=0.1)
        finally:
            writer.join()
            stop_profiler(profiler)
        stats: dict[str, Any] = requests.get(f"{emulator.url}/_emulator/stats/", timeout=30).json()
        return Result(
            workers=workers or AgentConfig().workers, write_s=marks["written"],
            recorded_s=marks["recorded"], first_submitted_s=marks["first"], all_submitted_s=marks["all"],
            failed=int(marks["failed"]), agent_cpu_s=cpu_seconds(agent.pid) - cpu0,
            emulator_cpu_s=cpu_seconds(emulator.pid) - emu_cpu0,
            requests={k: v for k, v in stats["requests"].items() if "/api/" in k},
            submitted_at=sorted(first_transitions(db, JobState.SUBMITTED).values()),
        )
    finally:
        if agent is not None:
            agent.stop()
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--workers", default="default",
                        help="comma-separated worker counts; 'default' uses the config default")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write py-spy collapsed stacks of the agent per run: PREFIX-<workers>.txt")
    add_budget_scale(parser, "60")
    args = parser.parse_args()
    scale = args.budget_scale
    print(machine())
    print(budgets_label(scale))
    results = []
    for w in args.workers.split(","):
        out = args.profile.with_name(f"{args.profile.name}-{w}.txt") if args.profile else None
        results.append(run_once(args.entries, None if w == "default" else int(w), scale, out))
        if out is not None:
            print(f"workers={w}: " + profile_summary(out))
    burst = int(RateLimits().job_submission_burst)
    rows = []
    for r in results:
        sustained = sustained_per_s(r.submitted_at, burst)
        per_hour = real_per_hour(1, 1 / sustained, scale) if sustained else float("nan")
        if scale is None:
            verdict = "MET" if r.all_submitted_s < TARGET_S and not r.failed else "MISSED"
        else:
            verdict = "MET" if per_hour >= TARGET_PER_HOUR and not r.failed else "MISSED"
        rows.append([r.workers, f"{r.write_s:.1f}", f"{r.recorded_s:.1f}", f"{r.first_submitted_s:.1f}",
                     f"{r.all_submitted_s:.1f}", f"{args.entries / r.all_submitted_s:.1f}",
                     f"{real_per_hour(args.entries, r.all_submitted_s, scale):.0f}", f"{per_hour:.0f}",
                     r.failed, f"{r.agent_cpu_s:.1f}", f"{r.emulator_cpu_s:.1f}", verdict])
    target = f"< {TARGET_S:.0f} s" if scale is None else f">= {TARGET_PER_HOUR:.0f} jobs/h"
    print(table(["workers", "entries written (s)", "all recorded (s)", "first submitted (s)",
                 "all submitted (s)", "jobs/s measured", "jobs/h real, overall",
                 "jobs/h real, sustained (2nd half)", "failed", "agent CPU (s)", "emulator CPU (s)",
                 target], rows))
    if scale is not None:
        limits = scaled_rate_limits(1)
        print(f"ceiling: job-submission {limits.job_submission_per_hour:.0f}/h x target_fraction "
              f"{limits.target_fraction:g} = {limits.job_submission_per_hour * limits.target_fraction:.0f}"
              f" jobs/h (burst {burst} on top)")
    for r in results:
        print(f"workers {r.workers}: submitted per 10 s from the first: {per_window(r.submitted_at, 10.0)}")
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            print(f"workers {r.workers} vs {base.workers}: "
                  f"{base.all_submitted_s / r.all_submitted_s:.2f}x the throughput")
    print("API requests per job (last run): " + ", ".join(
        f"{k} {v / args.entries:.2f}" for k, v in sorted(results[-1].requests.items())))
    print(f"command: {PY} benchmarks/agent_submit_bench.py --entries {args.entries} --workers {args.workers} "
          f"--budget-scale {scale_flag(scale)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
