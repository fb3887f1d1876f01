"""`burst-agent deliver --job ID`: finish a relay killed before its job's outputs came back (epilog)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from burst_agent.commands.relay import DEFAULT_SPOOL, add_agent_argument, agents_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", required=True, metavar="ID", help="the scheduler's job id (SLURM_JOB_ID)")
    parser.add_argument("--spool", type=Path, default=DEFAULT_SPOOL, help=f"default {DEFAULT_SPOOL}")
    parser.add_argument("--detach", action="store_true",
                        help="return at once and deliver from a process in a session of its own (the epilog)")
    add_agent_argument(parser)


def detached() -> bool:
    """Fork; True in the child, once it leads a session of its own; the parent returns False only then.

    The wait matters: slurmd kills the epilog's process group when the epilog returns, and a child
    that had not yet left that group (as with `setsid --fork`) would die with it.
    """
    ready, told = os.pipe()
    if os.fork():
        os.close(told)
        os.read(ready, 1)
        os.close(ready)
        return False
    os.close(ready)
    os.setsid()
    os.write(told, b".")
    os.close(told)
    return True


def run(args: argparse.Namespace) -> int:
    from burst_agent.relay import run_delivery

    agents = agents_of(args)
    if args.detach and not detached():
        return 0
    return run_delivery(args.spool, args.job, agents=agents)
