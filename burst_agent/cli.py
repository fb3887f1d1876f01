"""burst-agent: burst Slurm and PBS batch jobs to Rescale (subcommands live in burst_agent/commands/)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from burst_agent import __version__

# name -> (module under burst_agent.commands, one-line help). Each module has
# `add_arguments(parser)` and `run(args) -> int`; it is imported only when its command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "emulate": ("emulate", "run the local Rescale-compatible emulator"),
    "coretypes": ("coretypes", "list the coretype catalogue with cores, memory and price"),
    "translate": ("translate", "show the Rescale job JSON a Slurm or PBS script becomes"),
    "demo": ("demo", "start the emulator and run the example jobs end to end"),
    "run": ("run", "the daemon: take jobs from the spool, run them on Rescale, bring outputs back"),
    "status": ("status", "the agent's jobs: state, hardware, age, estimated cost"),
    "report": ("report", "a month's remote runs per account, user, coretype or project: core-hours, cost"),
    "sacct-sync": ("sacct_sync", "as root, from cron: each billed job's actual cost into its Slurm record"),
    "size-charges": ("size_charges", "as SlurmUser: set each held burst job's cloud-core charge, release it"),
    "relay": ("relay", "inside a Slurm/PBS job, as the user: hand the job to the agent and mirror it"),
    "deliver": ("deliver", "from the scheduler's epilog, as the job's owner: finish a dead relay's work"),
    "cancel": ("cancel", "stop a job (its remote job is stopped, outputs so far still come back)"),
    "config": ("config", "check a config file and show the effective config (`config check FILE`)"),
    "doctor": ("doctor", "check the installation: config, token, API, spool, state DB, metrics, Slurm"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="burst-agent", description="Burst ordinary Slurm and PBS batch jobs to the Rescale cloud."
    )
    parser.add_argument("--version", action="version", version=f"burst-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"burst_agent.commands.{module_name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
