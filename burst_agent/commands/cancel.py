"""`burst-agent cancel ID`: ask the running agent to stop a job (local id or spool entry name)."""

from __future__ import annotations

import argparse
import sys
import time

from burst_agent.commands.common import add_config_argument, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("job", metavar="ID", help="local job id or spool entry name (see burst-agent status)")


def run(args: argparse.Namespace) -> int:
    from burst_agent.pipeline.cancel import request_cancel
    from burst_agent.store import JobStore, UnknownJob

    config = load(args)
    with JobStore(config.agent.state_db) as store:
        try:
            job = request_cancel(store, args.job, time.time())
        except UnknownJob:
            print(f"burst-agent cancel: no job {args.job!r} in {config.agent.state_db}", file=sys.stderr)
            return 1
    if job.terminal:
        print(f"{job.id}: already {job.state.value}")
    else:
        print(f"{job.id}: cancel requested (state {job.state.value}); the agent stops it on its next tick")
    return 0
