"""Intake: claim spool entries, record them, translate them (or quarantine them with the reason)."""

from __future__ import annotations

import os
from typing import Any

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.context import Context
from burst_agent.planning import EntryFacts, decide, delivery_of
from burst_agent.record import JobRecord, Origin
from burst_agent.relay import INPUT_MANIFEST
from burst_agent.request import TranslateError
from burst_agent.spool import REQUEST, AlreadyClaimed, EntryRejected, Spool, SpoolEntry


def reconcile_key(cluster: str, entry: str) -> str:
    """The tag (and job-name suffix) that finds this entry's remote job again after a crash."""
    return f"burst-{cluster}-{entry}"


def _id_text(entry: SpoolEntry, request: dict[str, Any], key: str) -> str | None:
    """job_id / array_task_id as text; request.json is user-written, so its types are checked."""
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EntryRejected(entry.name, f"{REQUEST}: {key} must be a string or an integer")
    return str(value)


def facts_of(entry: SpoolEntry, spool: Spool) -> EntryFacts:
    """Everything the plan is decided from, read from the claimed entry once."""
    request = entry.request or {}
    workdir = request.get("workdir")
    return EntryFacts(
        name=entry.name, kind=entry.kind, owner_uid=entry.owner_uid, owner_name=entry.owner_name,
        agent_uid=os.geteuid(), request=request, script=entry.script,
        scheduler_job_id=_id_text(entry, request, "job_id"),
        has_manifest=(entry.path / INPUT_MANIFEST).is_file(),
        workdir_is_dir=isinstance(workdir, str) and os.path.isdir(workdir),
        results_dir=str(spool.results / entry.name), spool_log=str(spool.logs / f"{entry.name}.log"),
    )


def _partition(entry: SpoolEntry, request: dict[str, Any]) -> str | None:
    value = request.get("partition")
    if value is not None and not isinstance(value, str):
        raise EntryRejected(entry.name, f"{REQUEST}: partition must be a string")
    return value


def record_entry(ctx: Context, entry: SpoolEntry, facts: EntryFacts, delivery: str) -> JobRecord:
    """A RECEIVED job for a claimed entry (idempotent: a restart finds the existing record); the
    results dir of a job whose outputs go there is made now."""
    existing = ctx.store.by_entry(entry.name)
    if existing is not None:
        return existing
    request = entry.request or {}
    origin = Origin(owner_uid=entry.owner_uid, owner_name=entry.owner_name,
                    scheduler_job_id=facts.scheduler_job_id,
                    array_task_id=_id_text(entry, request, "array_task_id"),
                    partition=_partition(entry, request))
    if delivery != "direct":
        ctx.spool.results_dir(entry.name)
    return ctx.store.add_job(entry=entry.name, reconcile_key=reconcile_key(ctx.config.agent.cluster_name,
                                                                           entry.name), origin=origin)


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
            facts = facts_of(entry, ctx.spool)
            mode = delivery_of(facts)  # an entry nobody may deliver is rejected now, with its reason
            job = record_entry(ctx, entry, facts, mode)
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
    """RECEIVED -> TRANSLATED with the job's plan, or FAILED with the entry quarantined."""
    log = ctx.job_log(job)
    # I/O, outside the "pure, fails forever" block below: a catalogue that cannot be fetched or read
    # now is retried with backoff, never the job's fault.
    catalogue = ctx.catalogue.get()
    try:
        facts = facts_of(ctx.spool.load(job.entry), ctx.spool)
        plan, warnings = decide(facts, catalogue, ctx.config.translate, reconcile_key=job.reconcile_key,
                                projects=ctx.config.agent.projects,
                                keep_outputs=ctx.config.staging.keep_outputs_on_rescale,
                                fallbacks=ctx.config.failover.fallbacks,
                                same_cores=ctx.config.failover.same_cores)
    except (TranslateError, EntryRejected, ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        # Translation is pure: what fails now fails on every retry, so the job fails with the reason.
        reason = _rejection(job.entry, exc)
        log.warning("job rejected", reason=reason)
        return ctx.finish(job, JobState.FAILED, reason, reason_class="translate", failure_reason=reason,
                          quarantine=True)
    for warning in warnings:
        log.warning("script warning", detail=warning.render(job.entry))
    return ctx.transition(job, JobState.TRANSLATED, plan.hardware, plan=plan)
