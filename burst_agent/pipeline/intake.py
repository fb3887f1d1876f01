"""Intake: claim spool entries, record them, translate them (or quarantine them with the reason)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from burst_agent.dialects import parse_script
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.outpaths import expand
from burst_agent.relay import INPUT_MANIFEST
from burst_agent.request import JobRequest, TranslateError
from burst_agent.spool import REQUEST, AlreadyClaimed, EntryRejected, SpoolEntry
from burst_agent.store import JobRecord
from burst_agent.translate import translate

DEFAULT_STDOUT = {"slurm": "slurm-%j.out", "pbs": "%x.o%j", "plain": "output.log"}
# The scheduler a relay ran under (its job id variable, seen by the relay) decides the dialect: a PBS
# job's script need not carry a #PBS line, and its PBS_* variables must still be exported.
SCHEDULER_OF_VAR = (("SLURM_JOB_ID", "slurm"), ("PBS_JOBID", "pbs"))


def scheduler_of(request: dict[str, Any] | None) -> str:
    """"slurm" or "pbs" when the real job's variables say so, else "auto" (from the directives)."""
    env = (request or {}).get("scheduler_env")
    if not isinstance(env, dict):
        return "auto"
    return next((name for var, name in SCHEDULER_OF_VAR if var in env), "auto")


def reconcile_key(cluster: str, entry: str) -> str:
    """The tag (and job-name suffix) that finds this entry's remote job again after a crash."""
    return f"burst-{cluster}-{entry}"


def delivery(entry: SpoolEntry) -> str:
    """How a job's files travel: "plain" (results/<name>/), "relay" or "direct" (the user's workdir).

    plain: a script with no workdir in request.json (its own `#SBATCH -D` is not trusted as a place
    to write into). relay: the relay prepared the inputs (its manifest is in the entry) and, running
    as the user, shows the log and writes the outputs. direct: an entry of the agent's own user, who
    may use the workdir itself. Another user's workdir entry must come through the relay.
    """
    workdir = (entry.request or {}).get("workdir")
    if entry.kind != "dir" or not workdir:
        return "plain"
    if not isinstance(workdir, str):
        raise EntryRejected(entry.name, f"{REQUEST}: workdir must be a string")
    if (entry.path / INPUT_MANIFEST).is_file():
        return "relay"
    if entry.owner_uid != os.geteuid():
        raise EntryRejected(entry.name, "another user's job must come through `burst-agent relay`")
    if not os.path.isdir(workdir):
        raise EntryRejected(entry.name, f"workdir {workdir}: No such file or directory")
    return "direct"


def uses_workdir(entry: SpoolEntry) -> bool:
    return delivery(entry) == "direct"


def output_paths(
    results: Path | None, scheduler: str, req: JobRequest, owner: str | None
) -> dict[str, str | None]:
    """Where outputs and the log go: the job's workdir (scheduler jobs) or `results` (plain scripts)."""
    if results is not None or not req.workdir:
        out = results if results is not None else Path(os.devnull)
        return {"workdir": None, "output_dir": str(out), "stdout_path": str(out / DEFAULT_STDOUT["plain"]),
                "stderr_path": None}
    workdir = Path(req.workdir)
    values = {
        "job_id": req.job_id, "job_name": req.job_name or "burst-job", "user": owner,
        "array_task_id": str(req.array_task_id) if req.array_task_id is not None else None,
        "array_job_id": req.scheduler_env.get("SLURM_ARRAY_JOB_ID"),  # %A: the real array's id
    }
    stdout = workdir / expand(req.stdout or DEFAULT_STDOUT.get(scheduler, "slurm-%j.out"), values)
    stderr = workdir / expand(req.stderr, values) if req.stderr and not req.join_output else None
    return {"workdir": str(workdir), "output_dir": str(workdir), "stdout_path": str(stdout),
            "stderr_path": str(stderr) if stderr else None}


def _id_text(entry: SpoolEntry, request: dict[str, Any], key: str) -> str | None:
    """job_id / array_task_id as text; request.json is user-written, so its types are checked."""
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EntryRejected(entry.name, f"{REQUEST}: {key} must be a string or an integer")
    return str(value)


def record_entry(ctx: Context, entry: SpoolEntry) -> JobRecord:
    """A RECEIVED job for a claimed entry (idempotent: a restart finds the existing record)."""
    existing = ctx.store.by_entry(entry.name)
    if existing is not None:
        return existing
    request = entry.request or {}
    output_dir = request["workdir"] if uses_workdir(entry) else str(ctx.spool.results_dir(entry.name))
    return ctx.store.add_job(
        entry=entry.name,
        reconcile_key=reconcile_key(ctx.config.agent.cluster_name, entry.name),
        owner_uid=entry.owner_uid,
        owner_name=entry.owner_name,
        scheduler_job_id=_id_text(entry, request, "job_id"),
        array_task_id=_id_text(entry, request, "array_task_id"),
        request=request,
        output_dir=output_dir,
    )


def unrecorded_claims(ctx: Context) -> list[str]:
    """Entries a crash left claimed but unrecorded (a restart's business: intake records at once)."""
    return sorted(name for name in ctx.spool.list_claimed() if ctx.store.by_entry(name) is None)


# What a malformed or hostile entry can raise on its way in; anything else (the store failing) is not
# the entry's doing and stops this pass.
ENTRY_ERRORS = (EntryRejected, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError)


def intake(ctx: Context, recovered: list[str] | None = None) -> int:
    """Claim everything waiting in incoming/; `recovered` names claimed entries to record first."""
    count = 0
    recorded = set(recovered or ())

    def used(candidate: str) -> bool:  # a name a job already had: the drop becomes a new job anyway
        return ctx.store.by_entry(candidate) is not None

    for name in [*sorted(recorded), *ctx.spool.list_incoming()]:
        try:
            entry = ctx.spool.load(name) if name in recorded else ctx.spool.take(name, taken=used)
            name = entry.name
            delivery(entry)  # an entry nobody may deliver is rejected now, with its reason
            job = record_entry(ctx, entry)
        except AlreadyClaimed:
            continue
        except ENTRY_ERRORS as exc:
            # Whatever an entry does, it must not wedge intake: it goes to failed/ with the reason (a
            # store that fails is not the entry's doing: sqlite3 errors stop this pass and are logged).
            reason = exc.reason if isinstance(exc, EntryRejected) else f"cannot load the entry: {exc}"
            if os.path.lexists(ctx.spool.claimed / name):  # take() quarantines what it rejects itself
                ctx.spool.quarantine(name, reason)
            ctx.log.warning("spool entry rejected", entry=name, reason=reason)
            continue
        ctx.job_log(job).info("job received", owner_uid=job.owner_uid)
        count += 1
    return count


def _rejection(entry: str, exc: Exception) -> str:
    if isinstance(exc, TranslateError):
        return exc.render(entry)
    if isinstance(exc, EntryRejected):
        return exc.reason
    return f"{entry}: cannot translate: {exc}"


def translate_job(ctx: Context, job: JobRecord) -> JobRecord:
    """RECEIVED -> TRANSLATED with the Rescale body, or FAILED with the entry quarantined."""
    log = ctx.job_log(job)
    # I/O, outside the "pure, fails forever" block below: a catalogue that cannot be fetched or read
    # now is retried with backoff, never the job's fault.
    catalogue = ctx.catalogue.get()
    try:
        entry = ctx.spool.load(job.entry)
        parsed = parse_script(entry.script, scheduler=scheduler_of(entry.request),
                              request_overrides=entry.request)
        result = translate(
            parsed, catalogue, ctx.config.translate, job_name_hint=job.entry,
            job_ids={"job_id": job.scheduler_job_id} if job.scheduler_job_id else None,
        )
    except (TranslateError, EntryRejected, ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        # Translation is pure: what fails now fails on every retry, so the job fails with the reason.
        reason = _rejection(job.entry, exc)
        ctx.spool.quarantine(job.entry, reason)
        log.warning("job rejected", reason=reason)
        return ctx.finish(job, JobState.FAILED, reason, reason_class="translate", failure_reason=reason)
    for warning in result.warnings:
        log.warning("script warning", detail=warning.render(job.entry))
    body = dict(result.body)
    body["name"] = f"{body['name']} [{job.reconcile_key}]"
    account = parsed.request.account
    mode = delivery(entry)
    results = None if mode == "direct" else Path(str(job.output_dir))
    paths = output_paths(results, parsed.scheduler, parsed.request, job.owner_name)
    if mode == "relay":  # the relay prepared the inputs and shows the log; the agent keeps its copy
        paths.update(workdir=None, stdout_path=str(ctx.spool.logs / f"{job.entry}.log"))
    return ctx.store.transition(
        job.id, JobState.TRANSLATED, f"{result.coretype} x{result.cores_per_slot} x{result.slots}",
        **paths,
        job_spec={"body": body, "script": entry.script, "delivery": mode}, scheduler=parsed.scheduler,
        coretype=result.coretype, cores_per_slot=result.cores_per_slot, slots=result.slots,
        price_per_core_hour=result.estimated_price_per_hour / (result.cores_per_slot * result.slots),
        project=ctx.config.agent.projects.get(account) if account else None,
    )
