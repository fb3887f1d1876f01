"""API calls per active job per poll cycle: the agent's watch (one listing) against a naive per-job poller.

500 remote jobs stay active (the emulator's step is an hour, so they sit in Pending). Both pollers use
the same RescaleClient, built by build_context() from an agent config; the agent side is
burst_agent.pipeline.watch.poll(ctx) called directly (no agent process, no scheduler), so only the
watch's own requests are counted. Requests are counted by the emulator (GET /_emulator/stats/).

Both pollers spend the jobs-usage scope of the agent's client: --budget-scale 1 (the default) is Rescale's
default budgets in real time (90,000/h x 0.85 = 21.25 requests/s, 300 saved up), so "s / cycle" is what a
cycle takes under them; K multiplies every hourly budget by K. The remote jobs are made beforehand by a
client with the budgets lifted (setup, not measured).

Run:  .venv/bin/python benchmarks/agent_poll_bench.py [--jobs 500] [--cycles 10] [--naive-cycles 2]
      [--budget-scale 1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from agentbench import (
    PY,
    TOKEN,
    add_budget_scale,
    add_queued_job,
    budgets_label,
    job_body,
    machine,
    scale_flag,
    table,
    write_config,
)

from burst_agent.config import RateLimits, load_config
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.watch import poll
from burst_agent.pipeline.wiring import build_context
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.emulator import spawn_emulator_process
from burst_agent.rescale.ratelimit import JOBS_USAGE, RateBudgets
from burst_agent.secret import Token
from burst_agent.store import JobStore

TARGET = 0.05  # API calls per active job per cycle (the target)
NAIVE = 2  # GET /jobs/{id}/ + GET /jobs/{id}/statuses/


def api_requests(url: str) -> int:
    counts: dict[str, int] = requests.get(f"{url}/_emulator/stats/", timeout=30).json()["requests"]
    return sum(n for key, n in counts.items() if key.split(" ", 1)[1].startswith("/api/"))


def make_remote_jobs(url: str, jobs: int) -> list[str]:
    """Create and submit `jobs` remote jobs (8 at a time, budgets lifted); returns their ids in order."""
    body, _ = job_body()
    budgets = RateBudgets(RateLimits(enabled=False))
    with RescaleClient(url, Token(TOKEN), budgets=budgets) as client:
        def one(i: int) -> str:
            remote = client.create_job({**body, "name": f"poll-bench-{i}"})
            client.submit_job(str(remote["id"]))
            return str(remote["id"])

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(jobs)))


def naive_cycle(ctx: Context) -> None:
    """What a client without the listing does: the job, then its status history, for every job."""
    for job in ctx.store.active_remote():
        assert job.remote_job_id is not None  # narrowing: active_remote() returns jobs with ids
        ctx.client.get_job(job.remote_job_id)
        ctx.client.job_statuses(job.remote_job_id)


def measure(url: str, cycles: int, run: Any) -> tuple[int, float]:
    """(API requests, seconds per cycle) over `cycles` calls of run()."""
    before = api_requests(url)
    started = time.perf_counter()
    for _ in range(cycles):
        run()
    elapsed = (time.perf_counter() - started) / cycles
    return api_requests(url) - before, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=10, help="measured watch cycles")
    parser.add_argument("--naive-cycles", type=int, default=2, help="measured naive cycles")
    add_budget_scale(parser, "1")
    args = parser.parse_args()
    print(machine())
    print(budgets_label(args.budget_scale))
    tmp = Path(tempfile.mkdtemp(prefix="burst-poll-bench-"))
    emulator = spawn_emulator_process(tmp / "emulator", TOKEN, step_seconds=3600)
    ctx = None
    try:
        config_path = write_config(tmp, emulator.url, budget_scale=args.budget_scale)
        config = load_config(config_path)
        remote_ids = make_remote_jobs(emulator.url, args.jobs)
        ctx = build_context(config)
        body, script = job_body()
        ctx.store.close()
        with JobStore(config.agent.state_db, synchronous="NORMAL") as store:
            for i, remote_id in enumerate(remote_ids):
                add_queued_job(store, i, body, script, remote_id, "Pending", JobState.SUBMITTED)
        ctx.store = JobStore(config.agent.state_db)
        active = len(ctx.store.active_remote())
        poll(ctx)  # warm-up: the session's connection, the first page
        ours_calls, ours_s = measure(emulator.url, args.cycles, lambda: poll(ctx))
        ours_waited = ctx.client.budgets.state(JOBS_USAGE).waited_s
        naive_calls, naive_s = measure(emulator.url, args.naive_cycles, lambda: naive_cycle(ctx))
        naive_waited = ctx.client.budgets.state(JOBS_USAGE).waited_s - ours_waited
        still = requests.get(f"{emulator.url}/_emulator/stats/", timeout=30).json()["jobsByStatus"]
    finally:
        if ctx is not None:
            ctx.store.close()
            ctx.client.close()
        emulator.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ours = ours_calls / (active * args.cycles)
    naive = naive_calls / (active * args.naive_cycles)
    verdict = "MET" if ours <= TARGET else "MISSED"
    print(f"{active} active jobs tracked; emulator job statuses at the end: {still}")
    print(table(
        ["poller", "cycles", "API calls", "calls / active job / cycle", "s / cycle"],
        [["agent watch.poll (one paginated listing)", args.cycles, ours_calls, f"{ours:.4f}",
          f"{ours_s:.3f}"],
         ["naive per-job (GET job + GET statuses)", args.naive_cycles, naive_calls, f"{naive:.4f}",
          f"{naive_s:.3f}"]],
    ))
    print(f"ratio naive/agent: {naive / ours:.0f}x fewer calls, {naive_s / ours_s:.1f}x less time per cycle")
    print(f"requests slept in the jobs-usage budget: watch {ours_waited:.1f} s, naive {naive_waited:.1f} s "
          f"in all; agent.poll_interval_s {config.agent.poll_interval_s:g} s")
    print(f"target <= {TARGET} calls per active job per cycle: {verdict} ({ours:.4f}; naive {NAIVE})")
    print(f"command: {PY} benchmarks/agent_poll_bench.py --jobs {args.jobs} --cycles {args.cycles} "
          f"--naive-cycles {args.naive_cycles} --budget-scale {scale_flag(args.budget_scale)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
