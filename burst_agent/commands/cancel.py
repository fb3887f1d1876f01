"""`burst-agent cancel ID`: ask the running agent to stop a job (local id, spool entry name, or for a
user, their scheduler job id). A user who cannot read the database asks through the agent's socket,
which cancels only the caller's own jobs."""

from __future__ import annotations

import argparse
import sys
import time

from burst_agent.commands.common import add_config_argument, agent_unreachable, ask_agent, load, reads_store
from burst_agent.config import Config, StateLocation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("job", metavar="ID", help="local job id or spool entry name (see burst-agent "
                        "status), or your scheduler job id")


def _in_store(state_db: StateLocation, ref: str) -> tuple[str, str, bool] | None:
    from burst_agent.ledger import UnknownJob
    from burst_agent.pipeline.cancel import request_cancel
    from burst_agent.stores import open_store

    with open_store(state_db) as store:
        try:
            job = request_cancel(store, ref, time.time())
        except UnknownJob:
            return None
    return job.id, job.state.value, job.terminal


def _over_socket(config: Config, ref: str) -> tuple[str, str, bool] | None:
    answer = ask_agent(config, {"op": "cancel", "job": ref})
    if answer.get("error"):
        return None
    return str(answer["id"]), str(answer["state"]), bool(answer.get("terminal"))


def run(args: argparse.Namespace) -> int:
    from burst_agent.store import StoreError

    config = load(args)
    local = reads_store(config)
    try:
        found = _in_store(config.agent.state_db, args.job) if local else \
            _over_socket(config, args.job)
    except OSError as exc:
        return agent_unreachable("cancel", config, exc)
    except StoreError as exc:  # e.g. a PostgreSQL server that does not answer
        print(f"burst-agent cancel: {exc}", file=sys.stderr)
        return 1
    if found is None:
        where = config.agent.state_db if local else "the jobs you own"
        print(f"burst-agent cancel: no job {args.job!r} in {where}", file=sys.stderr)
        return 1
    job_id, state, terminal = found
    if terminal:
        print(f"{job_id}: already {state}")
    else:
        print(f"{job_id}: cancel requested (state {state}); the agent stops it on its next tick")
    return 0
