"""Job records for tests: a plan literal and a walk along the state machine to any state."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from decimal import Decimal
from typing import Any

from burst_agent.lifecycle import TRANSITIONS, JobState
from burst_agent.record import Inputs, JobRecord, Origin, Plan
from burst_agent.store import JobStore

S = JobState

BODY = {"name": "job [burst-t-e]", "jobanalyses": [
    {"command": "bash ./burst_job.sh", "hardware": {"coreType": "emerald", "coresPerSlot": 4, "slots": 1},
     "analysis": {"code": "user_included", "version": "0"}}]}


def plan(**changes: Any) -> Plan:
    """A plain job's plan: 4 emerald cores, outputs to /tmp/results (override any field)."""
    base = Plan(scheduler="slurm", delivery="plain", workdir=None, inputs_from=None,
                output_dir="/tmp/results", stdout_path="/tmp/results/output.log", stderr_path=None,
                script="#!/bin/bash\necho hi\n", body=BODY, coretype="emerald", cores_per_slot=4, slots=1,
                price_per_core_hour=Decimal("0.10"), project=None)
    return replace(base, **changes)


INPUTS = Inputs(file_ids=("f1",), md5s={}, placement="", cached={})


def path_to(target: JobState) -> list[JobState]:
    """The shortest forward path from RECEIVED to `target` (FAILED/CANCELLED only as the last step)."""
    queue, seen = deque([[S.RECEIVED]]), {S.RECEIVED}
    while queue:
        path = queue.popleft()
        if path[-1] is target:
            return path[1:]
        for nxt in sorted(TRANSITIONS[path[-1]]):
            if nxt not in seen and (nxt not in (S.FAILED, S.CANCELLED) or nxt is target):
                seen.add(nxt)
                queue.append([*path, nxt])
    raise ValueError(f"no path to {target}")


def make_job(store: JobStore, entry: str = "e", state: JobState = S.RECEIVED, *, owner_uid: int = 1000,
             job_plan: Plan | None = None, inputs: Inputs = INPUTS, remote_job_id: str | None = None,
             **origin: Any) -> JobRecord:
    """A job walked to `state` the way the pipeline would: plan at TRANSLATED, inputs at STAGED, a
    remote id at CREATED (R-<entry> unless given)."""
    job = store.add_job(entry=entry, reconcile_key=f"burst-t-{entry}",
                        origin=Origin(owner_uid=owner_uid, **origin))
    at = {S.TRANSLATED: {"plan": job_plan or plan()}, S.STAGED: {"inputs": inputs},
          S.CREATED: {"remote_job_id": remote_job_id or f"R-{entry}"}}
    for step in path_to(state):
        job = store.transition(job.id, step, step.value, **at.get(step, {}))
    return job
