"""`burst-agent deliver --job ID`: finish a relay killed before its job's outputs came back (epilog)."""

from __future__ import annotations

import argparse
from pathlib import Path

from burst_agent.commands.relay import DEFAULT_SPOOL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", required=True, metavar="ID", help="the scheduler's job id (SLURM_JOB_ID)")
    parser.add_argument("--spool", type=Path, default=DEFAULT_SPOOL, help=f"default {DEFAULT_SPOOL}")


def run(args: argparse.Namespace) -> int:
    from burst_agent.relay import run_delivery

    return run_delivery(args.spool, args.job)
