"""`burst-agent status`: the agent's jobs as a table (or JSON); a user who cannot read the database
sees their own jobs through the agent's socket (SO_PEERCRED says whose)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from burst_agent.commands.common import add_config_argument, agent_unreachable, ask_agent, load, reads_store
from burst_agent.config import Config, StateLocation
from burst_agent.pgurl import PostgresUrl

COLUMNS = ("ID", "SCHED-JOB", "OWNER", "REMOTE", "STATE", "HARDWARE", "AGE", "COST", "EXIT", "TRANSFER")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per job")
    parser.add_argument("--all", action="store_true", help="include finished jobs")


def _from_store(state_db: StateLocation, everything: bool) -> list[dict[str, Any]]:
    from burst_agent.jobview import as_dict
    from burst_agent.stores import open_store

    now = time.time()
    with open_store(state_db) as store:
        jobs = store.jobs() if everything else store.non_terminal()
    return [as_dict(job, now) for job in jobs]


def _leader_line(state_db: StateLocation) -> str | None:
    """Who leads, with a PostgreSQL store (active/standby, docs/ha.md): holder, epoch, lease left."""
    if not isinstance(state_db, PostgresUrl):
        return None
    from burst_agent.leadership import read_lease

    lease = read_lease(state_db)
    return f"leader: {lease.describe() if lease else 'none (schema before leadership)'}"


def _from_socket(config: Config, everything: bool) -> list[dict[str, Any]]:
    answer = ask_agent(config, {"op": "jobs", "all": everything})
    if answer.get("not_shown"):
        print(f"burst-agent status: {answer['not_shown']} older jobs not shown", file=sys.stderr)
    return list(answer.get("jobs", []))


def run(args: argparse.Namespace) -> int:
    from burst_agent.jobview import age
    from burst_agent.store import StoreError
    from burst_agent.textable import render

    config = load(args)
    try:
        views = _from_store(config.agent.state_db, args.all) if reads_store(config) else \
            _from_socket(config, args.all)
        leader = _leader_line(config.agent.state_db) if reads_store(config) else None
    except OSError as exc:
        return agent_unreachable("status", config, exc)
    except StoreError as exc:  # e.g. a PostgreSQL server that does not answer
        print(f"burst-agent status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        if leader:
            print(leader, file=sys.stderr)
        print(json.dumps(views, indent=1))
        return 0
    if leader:
        print(leader)
    rows = [
        (v["id"], v["scheduler_job_id"] or "-", v["owner"], v["remote_job_id"] or "-", v["state"],
         v["hardware"], age(v["age_s"]), v["estimated_cost"] or "-",
         "-" if v["exit_code"] is None else str(v["exit_code"]), v["transfer"] or "-")
        for v in views
    ]
    print(render(COLUMNS, rows))
    return 0
