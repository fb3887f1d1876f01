"""`burst-agent relay`: the user-side process inside a Slurm or PBS job (started by job_submit.lua)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from burst_agent.relayaddr import AgentAddress

DEFAULT_SPOOL = Path("/var/spool/burst-agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--script", type=Path, required=True, help="the job's original batch script")
    parser.add_argument("--request", type=Path, required=True,
                        help="the scheduler's merged request (JSON, docs/translation.md)")
    parser.add_argument("--spool", type=Path, default=DEFAULT_SPOOL, help=f"default {DEFAULT_SPOOL}")
    add_agent_argument(parser)


def add_agent_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", metavar="HOST:PORT[,HOST:PORT...]", default=None,
                        help="reach the agent over TCP with MUNGE, trying each address in turn (default: the"
                             " addresses in <spool>/agents if that file exists, else <spool>/agent.sock)")


def agents_of(args: argparse.Namespace) -> tuple[AgentAddress, ...]:
    """The agent addresses of --agent or <spool>/agents; a bad list or file exits 2 with why."""
    from burst_agent.relaynet import agent_addresses

    try:
        return agent_addresses(args.agent, args.spool)
    except (OSError, ValueError) as exc:
        print(f"burst-agent: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace) -> int:
    from burst_agent.config import ConfigError, StagingConfig
    from burst_agent.relay import run_relay

    try:  # the site's staging caps, when the user may read the agent's config
        from burst_agent.commands.common import load_config_file

        staging = load_config_file(None).staging
    except (ConfigError, OSError):
        staging = StagingConfig()
    return run_relay(args.script, args.request, args.spool, staging, agents_of(args))
