"""`burst-agent doctor`: check config, token, API, spool, state DB, metrics and Slurm; exit 1 on failure."""

from __future__ import annotations

import argparse

from burst_agent.commands.common import add_config_argument, config_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    from burst_agent import doctor

    results = doctor.run_checks(doctor.Context(config_path(args.config)))
    counts = {s: sum(r.status == s for _, r in results) for s in ("ok", "warning", "failed")}
    print(doctor.render_report(results))
    print(f"\n{counts['ok']} ok, {counts['warning']} warning(s), {counts['failed']} failed")
    return doctor.exit_code(results)
