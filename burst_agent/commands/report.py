"""`burst-agent report`: a month's remote runs per account, user, coretype or project, from the store."""

from __future__ import annotations

import argparse
import re
import sys
import time

from burst_agent.commands.common import add_config_argument, load, reads_store

MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def _month(text: str) -> str:
    if not MONTH.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month as YYYY-MM")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from burst_agent.report import GROUPS

    add_config_argument(parser)
    parser.add_argument("--month", type=_month, default=None, help="YYYY-MM, UTC (default: this month)")
    parser.add_argument("--by", choices=sorted(GROUPS), default="account", help="group by (default: account)")
    parser.add_argument("--csv", action="store_true", help="CSV instead of a table")


def run(args: argparse.Namespace) -> int:
    from burst_agent.report import COLUMNS, as_csv, cells, month_of, summary_line, total, usage
    from burst_agent.store import StoreError
    from burst_agent.stores import open_store
    from burst_agent.textable import render

    config = load(args)
    if not reads_store(config):
        print("burst-agent report: reads the agent's database: run it as root or as the agent's user",
              file=sys.stderr)
        return 1
    month = args.month or month_of(time.time())
    try:
        with open_store(config.agent.state_db) as store:
            rows = usage(store.jobs(with_remote_id=True), month, args.by, store.actual_costs())
            summary = store.billing_summary(month)
    except StoreError as exc:
        print(f"burst-agent report: {exc}", file=sys.stderr)
        return 1
    if args.csv:
        sys.stdout.write(as_csv(rows, args.by))
        return 0
    print(f"remote runs ended in {month} (UTC), by {args.by}; cost estimated from each job's price per "
          f"core-hour in its tier; ACTUAL: Rescale's bill of the jobs it has billed so far (n/m: n of the m "
          f"jobs), DIFF: actual - estimate of those jobs")
    print(render(COLUMNS, [cells(row) for row in [*rows, total(rows)]]))
    if summary is not None:
        print(summary_line(summary))
    return 0
