"""10,000 tracked jobs: agent restart time to "agent running", RSS after poll cycles, idle CPU.

A state DB is filled with 10,000 job records in QUEUED (full plan, paths, remote ids) and each has
its claimed spool entry, as a real agent leaves them. The emulator (in this process) holds the matching
10,000 remote jobs in Queued (injected into its store: creating them over HTTP would take minutes), so
the agent's one-listing watch finds every job. Then `burst-agent run` starts as a real process:
  ready   = seconds from spawn to the JSON log line {"event": "agent running"}
  RSS     = VmRSS / VmHWM from /proc/PID/status after the 1st and 2nd full poll cycle
  CPU     = agent CPU seconds per wall second over a later window (steady state, no job changes)
A poll cycle is complete when the emulator has served all its list pages (10,000 / LIST_PAGE_SIZE).
--budget-scale 1 (the default) runs the agent under Rescale's default budgets in real time (nothing here
waits for them: a cycle is 10 listing pages of jobs-usage); K multiplies every hourly budget by K.

Run:  .venv/bin/python benchmarks/agent_scale_bench.py [--jobs 10000] [--profile FILE] [--budget-scale 1]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

from agentbench import (
    PY,
    TOKEN,
    AgentProcess,
    add_budget_scale,
    add_queued_job,
    budgets_label,
    cpu_seconds,
    job_body,
    machine,
    proc_status,
    profile_summary,
    scale_flag,
    start_profiler,
    stop_profiler,
    table,
    wait_for,
    write_config,
)

from burst_agent.pipeline.watch import LIST_PAGE_SIZE
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.emulator import EmulatorHandle, start_emulator
from burst_agent.rescale.emulator.store import Job
from burst_agent.secret import Token
from burst_agent.spool import Spool
from burst_agent.store import JobStore

READY_TARGET_S = 5.0
RSS_TARGET_MB = 150.0
LISTING = "GET /api/v2/jobs/"


def inject_remote_jobs(emulator: EmulatorHandle, jobs: int) -> list[str]:
    """`jobs` submitted remote jobs sitting in Queued, cloned from one job created over HTTP."""
    body, _ = job_body()
    with RescaleClient(emulator.url, Token(TOKEN)) as client:
        template = emulator.store.jobs[str(client.create_job(body)["id"])]
    store = emulator.store
    ids = []
    with store.lock:
        for i in range(jobs):
            job = Job(id=store.new_id(6), name=f"scale-bench-{i}", analyses=template.analyses,
                      input_file_ids=[], submitted=True)
            job.add_status("Pending")
            job.add_status("Queued")
            job.add_cluster_status("Not Started")
            store.add_job(job)
            ids.append(job.id)
        del store.jobs[template.id]
    return ids


def populate(root: Path, remote_ids: list[str]) -> float:
    """The agent's state DB and claimed spool entries; returns seconds taken."""
    started = time.perf_counter()
    body, script = job_body()
    spool = Spool(root / "spool").ensure()
    with JobStore(root / "state.db", synchronous="NORMAL") as store:
        for i, remote_id in enumerate(remote_ids):
            add_queued_job(store, i, body, script, remote_id)
            (spool.claimed / f"20240101T000000-{i:016x}").write_text(script)
    return time.perf_counter() - started


def rss_verdict(mem: dict[str, float]) -> str:
    """The peak (VmHWM, MiB) against the target in MB (10^6 bytes)."""
    return "MET" if mem["VmHWM"] * 2**20 / 1e6 < RSS_TARGET_MB else "MISSED"


def listing_pages(emulator: EmulatorHandle) -> int:
    return int(emulator.stats()["requests"].get(LISTING, 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds of steady state to sample CPU and RSS (1 Hz)")
    parser.add_argument("--malloc-arena-max", type=int, default=None,
                        help="run the agent with MALLOC_ARENA_MAX=N (glibc arenas; tests the RSS growth)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy collapsed stacks of the agent over the CPU window (and a summary)")
    add_budget_scale(parser, "1")
    args = parser.parse_args()
    print(machine())
    print(budgets_label(args.budget_scale))
    root = Path(tempfile.mkdtemp(prefix="burst-scale-bench-"))
    emulator = start_emulator(root / "emulator", TOKEN, step_seconds=3600)
    agent = None
    try:
        remote_ids = inject_remote_jobs(emulator, args.jobs)
        filled = populate(root, remote_ids)
        print(f"prepared {args.jobs} QUEUED records + claimed entries in {filled:.1f} s")
        config = write_config(root, emulator.url, agent={"poll_interval_s": 5},
                              budget_scale=args.budget_scale)
        pages = math.ceil(args.jobs / LIST_PAGE_SIZE)
        env = {"MALLOC_ARENA_MAX": str(args.malloc_arena_max)} if args.malloc_arena_max else None
        agent = AgentProcess(config, root / "agent.log", env=env)
        ready_s = agent.wait_event("agent running")
        rows = [["ready (spawn -> 'agent running')", f"{ready_s:.2f} s",
                 f"< {READY_TARGET_S:.0f} s", "MET" if ready_s < READY_TARGET_S else "MISSED"]]
        for cycle in (1, 2):
            cycle_start = time.monotonic()
            cpu0 = cpu_seconds(agent.pid)
            wait_for(lambda c=cycle: listing_pages(emulator) >= c * pages, 180, f"poll cycle {cycle}")
            listed = time.monotonic()
            time.sleep(1.0)  # the agent walks the listing after the last page
            mem = proc_status(agent.pid)
            rows.append([f"RSS after poll cycle {cycle} (VmRSS / VmHWM)",
                         f"{mem['VmRSS']:.0f} / {mem['VmHWM']:.0f} MiB", f"< {RSS_TARGET_MB:.0f} MB",
                         rss_verdict(mem)])
            rows.append([f"poll cycle {cycle}: {pages} pages listed (wall, agent CPU)",
                         f"{listed - cycle_start:.1f} s, {cpu_seconds(agent.pid) - cpu0:.1f} s", "-", "-"])
        spy = start_profiler(agent.pid, args.profile) if args.profile else None
        cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
        pages0, samples = listing_pages(emulator), []
        while time.monotonic() - t0 < args.window:
            time.sleep(1.0)
            samples.append(proc_status(agent.pid)["VmRSS"])
        cycles = (listing_pages(emulator) - pages0) / pages
        idle_cpu = (cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0)
        stop_profiler(spy)
        rows.append([f"agent CPU, steady state ({args.window:.0f} s window, {cycles:.1f} poll cycles)",
                     f"{idle_cpu:.0%} of one core", "-", "-"])
        rows.append(["VmRSS over that window, 1 Hz (min / max / last)",
                     f"{min(samples):.0f} / {max(samples):.0f} / {samples[-1]:.0f} MiB", "-", "-"])
        mem = proc_status(agent.pid)
        rows.append(["RSS at the end (VmRSS / VmHWM)", f"{mem['VmRSS']:.0f} / {mem['VmHWM']:.0f} MiB",
                     f"< {RSS_TARGET_MB:.0f} MB", rss_verdict(mem)])
    finally:
        if agent is not None:
            agent.stop()
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(table(["measure", "value", "target", "verdict"], rows))
    if args.profile:
        print(profile_summary(args.profile))
    extra = (f" --profile {args.profile}" if args.profile else "") + (
        f" --malloc-arena-max {args.malloc_arena_max}" if args.malloc_arena_max else "")
    print(f"command: {PY} benchmarks/agent_scale_bench.py --jobs {args.jobs} "
          f"--window {args.window:.0f} --budget-scale {scale_flag(args.budget_scale)}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
