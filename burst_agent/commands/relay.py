"""`burst-agent relay`: the user-side process inside a Slurm or PBS job (started by job_submit.lua)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SPOOL = Path("/var/spool/burst-agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--script", type=Path, required=True, help="the job's original batch script")
    parser.add_argument("--request", type=Path, required=True,
                        help="the scheduler's merged request (JSON, docs/translation.md)")
    parser.add_argument("--spool", type=Path, default=DEFAULT_SPOOL, help=f"default {DEFAULT_SPOOL}")


def run(args: argparse.Namespace) -> int:
    from burst_agent.config import ConfigError, StagingConfig
    from burst_agent.relay import run_relay

    try:  # the site's staging caps, when the user may read the agent's config
        from burst_agent.commands.common import load_config_file

        staging = load_config_file(None).staging
    except (ConfigError, OSError):
        staging = StagingConfig()
    return run_relay(args.script, args.request, args.spool, staging)
