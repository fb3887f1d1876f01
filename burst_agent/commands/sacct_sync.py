"""`burst-agent sacct-sync`: put each billed job's actual cost into its Slurm record (root, from cron)."""

from __future__ import annotations

import argparse
import sys
import time

from burst_agent.commands.common import add_config_argument, load, reads_store, slurm_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="show what would be written, write nothing")


def _run(argv: list[str]) -> str | None:
    return slurm_output(argv, "sacct-sync")


def run(args: argparse.Namespace) -> int:
    from burst_agent.sacctsync import sync
    from burst_agent.store import StoreError
    from burst_agent.stores import open_store

    config = load(args)
    if not reads_store(config):
        print("burst-agent sacct-sync: reads the agent's database: run it as root", file=sys.stderr)
        return 1
    try:
        with open_store(config.agent.state_db) as store:
            jobs, actuals = store.jobs(with_remote_id=True), store.actual_costs()
            done = sync(jobs, actuals, _run, time.time(), args.dry_run)
    except StoreError as exc:
        print(f"burst-agent sacct-sync: {exc}", file=sys.stderr)
        return 1
    for job_id, text, ok in done:
        print(f"{job_id}: {'would write' if args.dry_run else 'written' if ok else 'NOT written'}: {text}")
    return 0 if all(ok for *_rest, ok in done) else 1
