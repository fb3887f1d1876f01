"""`burst-agent demo`: the emulator and an agent on a temporary spool, running the shipped examples."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=None, metavar="DIR",
                        help="where to put the spool, state and job dirs (default: a new temp dir)")
    parser.add_argument("--step-seconds", type=float, default=0.3,
                        help="emulator: seconds between remote status changes (default 0.3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")


def run(args: argparse.Namespace) -> int:
    from burst_agent.demo import run_demo

    return run_demo(args.dir, step_seconds=args.step_seconds, timeout=args.timeout)
