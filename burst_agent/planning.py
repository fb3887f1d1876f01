"""Decide a job's whole plan once, from the facts of its spool entry (pure: no I/O)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from burst_agent.dialects import parse_script
from burst_agent.dialects.registry import DIALECTS, dialect_of_env
from burst_agent.model import Coretype
from burst_agent.outpaths import expand
from burst_agent.record import Plan, attempt_key
from burst_agent.rejection import EntryRejected
from burst_agent.request import JobRequest, ScriptWarning
from burst_agent.translate import translate

PLAIN = DIALECTS["plain"]


@dataclass(frozen=True)
class EntryFacts:
    """What the agent learnt of a claimed entry, gathered once by the intake shell."""

    name: str
    kind: str  # "dir" or "file"
    owner_uid: int
    owner_name: str | None
    agent_uid: int
    request: Mapping[str, Any]
    script: str
    scheduler_job_id: str | None
    has_manifest: bool  # the relay's input manifest is in the entry
    workdir_is_dir: bool
    results_dir: str  # <spool>/results/<entry>
    spool_log: str  # <spool>/logs/<entry>.log: the agent's copy of a relay job's log


def scheduler_of(request: Mapping[str, Any] | None) -> str:
    """The dialect whose job id variable the real job carries, else "auto" (from the directives).

    The scheduler a relay ran under decides: a PBS job's script need not carry a #PBS line, and its
    PBS_* variables must still be exported.
    """
    env = (request or {}).get("scheduler_env")
    found = dialect_of_env(env) if isinstance(env, dict) else None
    return found.name if found else "auto"


def delivery_of(facts: EntryFacts) -> str:
    """How a job's files travel: "plain" (results/<name>/), "relay" or "direct" (the user's workdir).

    plain: a script with no workdir in request.json (its own `#SBATCH -D` is not trusted as a place
    to write into). relay: the relay prepared the inputs (its manifest is in the entry) and, running
    as the user, shows the log and writes the outputs. direct: an entry of the agent's own user, who
    may use the workdir itself. Another user's workdir entry must come through the relay: an entry
    nobody may deliver raises EntryRejected, its reason saying why.
    """
    workdir = facts.request.get("workdir")
    if facts.kind != "dir" or not workdir:
        return "plain"
    if not isinstance(workdir, str):
        raise EntryRejected(facts.name, "request.json: workdir must be a string")
    if facts.has_manifest:
        return "relay"
    if facts.owner_uid != facts.agent_uid:
        raise EntryRejected(facts.name, "another user's job must come through `burst-agent relay`")
    if not facts.workdir_is_dir:
        raise EntryRejected(facts.name, f"workdir {workdir}: No such file or directory")
    return "direct"


def output_paths(results: str | None, scheduler: str, req: JobRequest, owner: str | None
                 ) -> tuple[str, str, str | None]:
    """(output dir, stdout, stderr): the job's workdir (scheduler jobs) or `results` (plain scripts)."""
    if results is not None or not req.workdir:
        out = results or ""
        return out, posixpath.join(out, PLAIN.default_stdout), None
    values = {
        "job_id": req.job_id, "job_name": req.job_name or "burst-job", "user": owner,
        "array_task_id": str(req.array_task_id) if req.array_task_id is not None else None,
        "array_job_id": req.scheduler_env.get("SLURM_ARRAY_JOB_ID"),  # %A: the real array's id
    }
    workdir = req.workdir
    pattern = req.stdout or DIALECTS.get(scheduler, DIALECTS["slurm"]).default_stdout
    stdout = posixpath.join(workdir, expand(pattern, values))
    stderr = req.stderr and not req.join_output and posixpath.join(workdir, expand(req.stderr, values))
    return workdir, stdout, stderr or None


def _named(body: Mapping[str, Any], reconcile_key: str, attempt: int) -> dict[str, Any]:
    """The body with the attempt's key at the end of its name (how an interrupted create is found)."""
    return {**body, "name": f"{body['name']} [{attempt_key(reconcile_key, attempt)}]"}


def decide(
    facts: EntryFacts, catalogue: Sequence[Coretype], translate_cfg: Any, *, reconcile_key: str,
    projects: Mapping[str, str], keep_outputs: str = "all", fallbacks: int = 0, same_cores: bool = False,
) -> tuple[Plan, tuple[ScriptWarning, ...]]:
    """The plan (and the script's warnings). Raises TranslateError, EntryRejected or ValueError."""
    mode = delivery_of(facts)
    parsed = parse_script(facts.script, scheduler=scheduler_of(facts.request),
                          request_overrides=dict(facts.request))
    sid = facts.scheduler_job_id
    result = translate(parsed, catalogue, translate_cfg, job_name_hint=facts.name,
                       job_ids={"job_id": sid} if sid else None, keep_outputs=keep_outputs,
                       fallbacks=fallbacks, same_cores=same_cores)
    body = _named(result.body, reconcile_key, 0)
    spare = tuple(replace(hw, body=_named(hw.body, reconcile_key, n))
                  for n, hw in enumerate(result.fallbacks, start=1))
    output_dir, stdout, stderr = output_paths(None if mode == "direct" else facts.results_dir,
                                              parsed.scheduler, parsed.request, facts.owner_name)
    if mode == "relay":  # the relay shows the log from its own copy; the agent keeps one in the spool
        stdout = facts.spool_log
    workdir = facts.request.get("workdir") if mode != "plain" else None
    account = parsed.request.account
    price = result.price_per_core_hour  # the tier's: every estimate (jobview, metrics, report) uses it
    plan = Plan(
        scheduler=parsed.scheduler, delivery=mode, workdir=workdir,
        inputs_from=workdir if mode == "direct" else None, output_dir=output_dir, stdout_path=stdout,
        stderr_path=stderr, script=facts.script, body=body, coretype=result.coretype,
        cores_per_slot=result.cores_per_slot, slots=result.slots, price_per_core_hour=price,
        project=projects.get(account) if account else None, account=account, fallbacks=spare,
    )
    return plan, result.warnings
