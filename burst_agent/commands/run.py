"""`burst-agent run`: the daemon (spool -> Rescale -> outputs), until SIGTERM."""

from __future__ import annotations

import argparse
import sys

from burst_agent.commands.common import add_config_argument, load, load_config_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--log-format", choices=("json", "console"), default="json",
                        help="json lines for journald (default) or human-readable lines")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    from burst_agent.agent import Agent
    from burst_agent.logsetup import configure
    from burst_agent.pipeline.wiring import build_context
    from burst_agent.secret import TokenError

    config = load(args)
    configure(level=args.log_level, console=args.log_format == "console")
    try:
        ctx = build_context(config)
    except (TokenError, OSError) as exc:
        print(f"burst-agent run: {exc}", file=sys.stderr)
        return 1
    agent = Agent(ctx, reload_config=lambda: load_config_file(args.config))
    agent.install_signal_handlers()
    try:
        agent.run()
    except OSError as exc:  # e.g. the metrics port is taken
        print(f"burst-agent run: {exc}", file=sys.stderr)
        return 1
    return 0
