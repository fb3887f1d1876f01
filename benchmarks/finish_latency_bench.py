"""Remote completion -> job DONE (outputs listed and fetched) while 1,000 entries wait for the submit budget.

The agent runs as a real process under Rescale's default budgets x K (--budget-scale, bursts as they
are); the emulator runs as another process. 1,000 spool entries are written before the agent starts;
every job runs `--run-s` seconds remotely (after the emulator's start-up steps), so jobs finish at the
rate the job-submission scope lets them in, while the entries behind them wait for that scope. For every
job that finished, from the emulator's `Completed` statusDate and the agent's state history (`at`):
  detect  = Completed -> staging_out (the watch saw it; bounded by agent.poll_interval_s)
  collect = staging_out -> done (outputs listed, fetched, committed; what the dispatcher's pacing decides)
  total   = Completed -> done
The sample is the jobs that completed while at least --min-backlog entries were still unsubmitted.

Run:  .venv/bin/python benchmarks/finish_latency_bench.py [--entries 1000] [--budget-scale 60]
      [--poll-interval 30] [--run-s 2] [--step-s 0.5] [--max-s 240]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import math
import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from agentbench import (
    PY,
    TOKEN,
    AgentProcess,
    add_budget_scale,
    budgets_label,
    first_transitions,
    machine,
    scale_flag,
    table,
    wait_for,
    write_config,
)

from burst_agent.config import AgentConfig
from burst_agent.lifecycle import JobState
from burst_agent.rescale.emulator import spawn_emulator_process
from burst_agent.spool import Spool, submit_entry

TARGET_P99_S = 10.0  # remote completion -> outputs listed, p99 (issue 13)
TERMINAL = (JobState.DONE.value, JobState.FAILED.value, JobState.CANCELLED.value)
SCRIPT = """#!/bin/bash
#SBATCH -J finish-{i}
#SBATCH -n 1
#SBATCH -t 00:30:00
echo job {i}
sleep {run_s}
"""


def limit_arg(text: str) -> tuple[str, float]:
    """--limit KEY=VALUE: an api.rate_limits key and its number."""
    key, _, value = text.partition("=")
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEY=NUMBER, not {text!r}") from None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def backlog_at(submitted: Sequence[float], entries: int, when: float) -> int:
    """Entries not yet submitted at `when`, given every submission time (sorted)."""
    return entries - bisect.bisect_right(submitted, when)


def _terminal(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        marks = ",".join("?" * len(TERMINAL))
        row = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", TERMINAL).fetchone()
        return int(row[0])
    finally:
        conn.close()


def _jobs(db: Path) -> dict[str, tuple[str | None, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, remote_job_id, state FROM jobs")}
    finally:
        conn.close()


def completed_at(url: str, remote_id: str) -> float | None:
    """The emulator's statusDate of the job's Completed status, as epoch seconds."""
    answer = requests.get(f"{url}/api/v2/jobs/{remote_id}/statuses/", timeout=30,
                          headers={"Authorization": f"Token {TOKEN}"})
    answer.raise_for_status()
    for item in answer.json()["results"]:
        if item.get("status") == "Completed":
            return datetime.fromisoformat(str(item["statusDate"])).timestamp()
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="burst-finish-bench-"))
    emulator = spawn_emulator_process(root / "emulator", TOKEN, step_seconds=args.step_s)
    agent = None
    try:
        config = write_config(root, emulator.url, agent={"poll_interval_s": args.poll_interval},
                              budget_scale=args.budget_scale, limits=dict(args.limit))
        spool = Spool(root / "spool").ensure()
        for i in range(args.entries):
            work = root / "work" / f"j{i}"
            work.mkdir(parents=True)
            (work / "input.txt").write_bytes(f"{i:08d}".encode() * 128)
            script = SCRIPT.format(i=i, run_s=args.run_s)
            submit_entry(spool, script, {"workdir": str(work), "job_id": str(i)})
        agent = AgentProcess(config, root / "agent.log")
        db = root / "state.db"
        agent.wait_event("agent running")
        with contextlib.suppress(TimeoutError):  # the window is over: what finished in it is the sample
            wait_for(lambda: _terminal(db) >= args.entries, args.max_s, "every job to end", step=0.5)
        agent.stop()
        stats = requests.get(f"{emulator.url}/_emulator/stats/", timeout=30).json()
        jobs = _jobs(db)
        out = first_transitions(db, JobState.STAGING_OUT)
        done = first_transitions(db, JobState.DONE)
        submitted = sorted(first_transitions(db, JobState.SUBMITTED).values())
        finished = {}
        for job_id, seen in out.items():
            remote_id = jobs[job_id][0]
            when = completed_at(emulator.url, remote_id) if remote_id else None
            if when is not None:
                finished[job_id] = (when, seen, done.get(job_id))
        states: dict[str, int] = {}
        for _remote, state in jobs.values():
            states[state] = states.get(state, 0) + 1
        return {"finished": finished, "submitted": submitted, "states": states,
                "requests": {k: v for k, v in stats["requests"].items() if "/api/" in k}}
    finally:
        if agent is not None:
            agent.stop()
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=AgentConfig().poll_interval_s,
                        help="agent.poll_interval_s (>= 5; default: the config default)")
    parser.add_argument("--run-s", type=float, default=2.0, help="seconds each remote script runs")
    parser.add_argument("--step-s", type=float, default=0.5,
                        help="emulator step: 5 steps of start-up before the script, one per status")
    parser.add_argument("--max-s", type=float, default=240.0, help="stop measuring after this long")
    parser.add_argument("--min-backlog", type=int, default=100,
                        help="sample: jobs that completed while at least this many entries were unsubmitted")
    parser.add_argument("--limit", type=limit_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="an experiment: one api.rate_limits key on top of the scaled defaults, e.g. "
                        "file_access_per_hour=432000")
    add_budget_scale(parser, "60")
    args = parser.parse_args()
    print(machine())
    print(budgets_label(args.budget_scale) + "".join(f"; {k} = {v:g}" for k, v in args.limit))
    result = run(args)
    finished, submitted = result["finished"], result["submitted"]
    sample = {job: times for job, times in finished.items()
              if backlog_at(submitted, args.entries, times[0]) >= args.min_backlog and times[2] is not None}
    rows = []
    for name, pick in (("detect: Completed -> staging_out", lambda t: t[1] - t[0]),
                       ("collect: staging_out -> done", lambda t: t[2] - t[1]),
                       ("total: Completed -> done", lambda t: t[2] - t[0])):
        values = [pick(t) for t in sample.values()]
        rows.append([name, *(f"{percentile(values, q):.2f}" for q in (50, 99, 100))] if values
                    else [name, "-", "-", "-"])
    print(table(["latency (s)", "p50", "p99", "max"], rows))
    backlogs = [backlog_at(submitted, args.entries, t[0]) for t in sample.values()]
    total_p99 = percentile([t[2] - t[0] for t in sample.values()], 99) if sample else float("inf")
    verdict = "MET" if total_p99 <= TARGET_P99_S else "MISSED"
    print(f"sample: {len(sample)} jobs done while >= {args.min_backlog} entries waited to be submitted "
          f"(unsubmitted at their completion: {min(backlogs, default=0)}-{max(backlogs, default=0)}); "
          f"{len(finished)} completed remotely, {len(submitted)} submitted; "
          f"states at the end: {result['states']}")
    print(f"target p99 total <= {TARGET_P99_S:.0f} s: {verdict} ({total_p99:.2f} s; "
          f"agent.poll_interval_s {args.poll_interval:g} bounds detect)")
    print("API requests per completed job: " + ", ".join(
        f"{k} {v / max(1, len(finished)):.2f}" for k, v in sorted(result["requests"].items())
        if k.startswith("GET ") and ("/files/" in k or "statuses" in k)))
    print(f"command: {PY} benchmarks/finish_latency_bench.py --entries {args.entries} "
          f"--budget-scale {scale_flag(args.budget_scale)} --poll-interval {args.poll_interval:g} "
          f"--run-s {args.run_s:g} --step-s {args.step_s:g} --max-s {args.max_s:g} "
          f"--min-backlog {args.min_backlog}" + "".join(f" --limit {k}={v:g}" for k, v in args.limit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
