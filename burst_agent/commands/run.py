"""`burst-agent run`: the daemon (spool -> Rescale -> outputs), until SIGTERM."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from burst_agent.commands.common import add_config_argument, load, load_config_file

if TYPE_CHECKING:
    from burst_agent.config import Config
    from burst_agent.leadership import Leadership
    from burst_agent.sdnotify import Notifier


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--log-format", choices=("json", "console"), default="json",
                        help="json lines for journald (default) or human-readable lines")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    from burst_agent.logsetup import configure, get_logger
    from burst_agent.pgurl import PostgresUrl
    from burst_agent.sdnotify import Notifier

    config = load(args)
    configure(level=args.log_level, console=args.log_format == "console")
    notifier = Notifier()
    if not isinstance(config.agent.state_db, PostgresUrl):
        return _serve(args, config, notifier, None)
    from burst_agent.leadership import stand_by  # PostgreSQL: active/standby, the lease decides

    try:
        leadership = stand_by(config, notifier, get_logger())
    except OSError as exc:  # e.g. the metrics port is taken
        print(f"burst-agent run: {exc}", file=sys.stderr)
        return 1
    if leadership is None:  # stopped while standing by
        return 0
    try:
        return _serve(args, config, notifier, leadership)
    finally:
        leadership.release()  # a clean stop hands the lease over at once


def _serve(args: argparse.Namespace, config: Config, notifier: Notifier, leadership: Leadership | None
           ) -> int:
    from burst_agent.agent import Agent
    from burst_agent.pipeline.wiring import build_context
    from burst_agent.secret import TokenError

    try:
        ctx = build_context(config)
    except (TokenError, OSError) as exc:
        print(f"burst-agent run: {exc}", file=sys.stderr)
        return 1
    if leadership is not None:
        leadership.attach(ctx)  # every write fenced by the lease's epoch, every API call guarded
    agent = Agent(ctx, reload_config=lambda: load_config_file(args.config), notifier=notifier)
    agent.install_signal_handlers()
    try:
        agent.run()
    except OSError as exc:  # e.g. the metrics port is taken
        print(f"burst-agent run: {exc}", file=sys.stderr)
        return 1
    return 0
