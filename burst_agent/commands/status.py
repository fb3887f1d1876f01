"""`burst-agent status`: the agent's jobs as a table (or JSON), from its state database."""

from __future__ import annotations

import argparse
import json
import time

from burst_agent.commands.common import add_config_argument, load

COLUMNS = ("ID", "SCHED-JOB", "OWNER", "REMOTE", "STATE", "HARDWARE", "AGE", "COST", "EXIT", "TRANSFER")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per job")
    parser.add_argument("--all", action="store_true", help="include finished jobs")


def run(args: argparse.Namespace) -> int:
    from burst_agent.jobview import age, as_dict
    from burst_agent.store import JobStore
    from burst_agent.textable import render

    config = load(args)
    now = time.time()
    with JobStore(config.agent.state_db) as store:
        jobs = store.jobs() if args.all else store.non_terminal()
    views = [as_dict(job, now) for job in jobs]
    if args.json:
        print(json.dumps(views, indent=1))
        return 0
    rows = [
        (v["id"], v["scheduler_job_id"] or "-", v["owner"], v["remote_job_id"] or "-", v["state"],
         v["hardware"], age(v["age_s"]), v["estimated_cost"] or "-",
         "-" if v["exit_code"] is None else str(v["exit_code"]), v["transfer"] or "-")
        for v in views
    ]
    print(render(COLUMNS, rows))
    return 0
