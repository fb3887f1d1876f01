"""Live-log tails on a virtual clock: API calls per active job per minute and a printed line's latency.

The fleet: `--jobs` executing jobs (default 500), `--printing` of them (default 10 %) print a line
every `--print-every` seconds, the others never do. The schedule is burst_agent.pipeline.tailplan
with the default config (driven the way LogTailer.cycle drives it: a job's first tail also lists its
runs), the poll is one job listing page per poll interval. Figures are for one hour after a warm-up
hour (the fleet has been executing for a while), and for the first hour from a cold start.

Run:  .venv/bin/python benchmarks/tail_budget.py [--jobs 500] [--printing 0.1] [--print-every 5]
      [--agent log_tail_budget_share=0.1 ...]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from dataclasses import dataclass, field

from burst_agent.config import Config, config_from_mapping
from burst_agent.pipeline.logtail import policy_of, tail_budget_per_hour
from burst_agent.pipeline.tailplan import TailPlan
from burst_agent.rescale.client import PAGE_SIZE

HOUR = 3600.0
CALLS_TARGET = 0.3  # calls per active job per minute, tails included (issue 13)
LATENCY_TARGET_S = 15.0  # p50 from a remote print to the line in slurm-N.out


@dataclass
class Window:
    """What one measured hour cost and how late its printed lines arrived."""

    calls: int = 0
    latencies: list[float] = field(default_factory=list)




def simulate(jobs: int, printing: float, print_every: float, hours: float, config: Config,
             seed: int = 1) -> list[Window]:
    """One Window per simulated hour, all jobs executing from t=0."""
    policy = policy_of(config.agent, tail_budget_per_hour(config, jobs))
    rng = random.Random(seed)
    printers = set(range(round(jobs * printing)))
    phase = {j: rng.uniform(0, print_every) for j in printers}  # first print time of each printer
    fetched = {j: 0.0 for j in range(jobs)}  # remote log read up to this time
    listed: set[int] = set()
    ids = [str(j) for j in range(jobs)]
    plan = TailPlan(policy, 0.0)
    plan.sync(ids, 0.0)
    windows = [Window() for _ in range(math.ceil(hours))]
    poll_every = config.agent.poll_interval_s
    poll_calls = max(1, math.ceil(jobs / PAGE_SIZE))
    now, next_poll = 0.0, 0.0
    while now < hours * HOUR:
        window = windows[int(now // HOUR)]
        while now >= next_poll:  # every poll due since the last cycle
            window.calls += poll_calls
            next_poll += poll_every
        for job_id in plan.ranked(now):
            if not plan.has_budget():
                break
            j = int(job_id)
            calls = 1 if j in listed else 2
            listed.add(j)
            lines = _printed(phase.get(j), print_every, fetched[j], now)
            window.latencies.extend(now - t for t in lines)
            fetched[j] = now
            window.calls += calls
            plan.tailed(job_id, now, grew=bool(lines), calls=calls)
        now += policy.cycle_s
    return windows


def _printed(first: float | None, every: float, after: float, upto: float) -> list[float]:
    """Print times in (after, upto] of a job printing at first, first + every, ... (none if silent)."""
    if first is None or upto < first:
        return []
    k = max(0, math.floor((after - first) / every) + 1)
    times = []
    while first + k * every <= upto:
        times.append(first + k * every)
        k += 1
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--printing", type=float, default=0.1)
    parser.add_argument("--print-every", type=float, default=5.0)
    parser.add_argument("--agent", action="append", default=[], metavar="KEY=VALUE",
                        help="an agent config key other than its default, e.g. log_tail_budget_share=0.1")
    args = parser.parse_args()
    agent = {key: float(value) for key, _, value in (item.partition("=") for item in args.agent)}
    config = config_from_mapping({"agent": agent}, "--agent")
    cold, steady = simulate(args.jobs, args.printing, args.print_every, 2, config)
    silent = simulate(1000, 0.0, args.print_every, 2, config)[1]
    print(f"tail budget: {tail_budget_per_hour(config, args.jobs):.0f} requests/h for {args.jobs} jobs "
          f"(share {config.agent.log_tail_budget_share:g} of jobs-usage x target fraction, at most "
          f"{config.agent.log_tail_calls_per_job_per_min:g} per executing job per minute)")
    for name, window in (("steady hour", steady), ("cold-start hour", cold)):
        per_job_min = window.calls / args.jobs / 60.0
        p50 = statistics.median(window.latencies) if window.latencies else float("nan")
        print(f"{name}: {per_job_min:.3f} calls/job/min (target <= {CALLS_TARGET}), "
              f"p50 line latency {p50:.1f} s (target <= {LATENCY_TARGET_S:g}), {window.calls} calls")
    print(f"1000 silent jobs, steady hour: {silent.calls} calls/h "
          f"({silent.calls / 1000 / 60:.3f} calls/job/min)")


if __name__ == "__main__":
    main()
