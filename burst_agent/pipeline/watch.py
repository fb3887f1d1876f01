"""Watch: one paginated listing of active remote jobs per cycle drives every job's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from burst_agent.lifecycle import JobState, is_allowed, map_remote_status
from burst_agent.pipeline.context import Context
from burst_agent.store import JobRecord

LIST_PAGE_SIZE = 100


def _content(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return str(value.get("content") or "") if isinstance(value, dict) else ""


def _epoch(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def run_window(statuses: list[dict[str, Any]]) -> dict[str, float]:
    """remote_started_at / remote_finished_at from a status history (Executing .. Completed)."""
    found: dict[str, float] = {}
    for item in statuses:  # newest first: the last match is the earliest
        when = _epoch(item.get("statusDate"))
        status = str(item.get("status") or "").lower()
        if when is not None and status == "executing":
            found["remote_started_at"] = when
        elif when is not None and status == "completed" and "remote_finished_at" not in found:
            found["remote_finished_at"] = when
    return found


def _apply(
    ctx: Context, job: JobRecord, status: str, reason: str | None, cluster: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Record a remote status and move the job if the status maps to a new, allowed state."""
    fields: dict[str, Any] = {"remote_status": status}
    if reason is not None:
        fields["remote_status_reason"] = reason
    target = map_remote_status(status)
    if target is JobState.RUNNING and status.lower() == "executing" and job.remote_started_at is None:
        fields["remote_started_at"] = ctx.clock()
    if target is JobState.STAGING_OUT:
        fields["remote_finished_at"] = ctx.clock()
    fields.update(extra or {})
    log = ctx.job_log(job)
    if target is not None and target is not job.state and is_allowed(job.state, target):
        moved = ctx.store.transition(
            job.id, target, f"remote {status}" + (f": {reason}" if reason else ""), **fields
        )
        if target is JobState.STAGING_OUT:
            ctx.metrics.job_started_remotely(moved)
            ctx.metrics.job_ran(moved)
        log.info("remote status", status=status, reason=reason, cluster=cluster, state=target.value)
    elif status != job.remote_status:
        ctx.store.update(job.id, **fields)
        log.info("remote status", status=status, reason=reason, cluster=cluster)


def poll(ctx: Context) -> int:
    """One cycle; returns the number of API calls it made for the status of individual jobs."""
    active = ctx.store.active_remote_brief()
    if not active:
        return 0
    listing = {
        str(item["id"]): item
        for item in ctx.client.iter_jobs(state="not_completed", page_size=LIST_PAGE_SIZE)
    }
    per_job_calls = 0
    for job_id, remote_id, _state, known_status in active:
        item = listing.get(remote_id)
        if item is not None:
            status = _content(item, "jobStatus")
            job = ctx.store.get(job_id) if status and status != known_status else None
            if job is not None:
                _apply(ctx, job, status, None, _content(item, "clusterStatusDisplay") or None)
            continue
        # Gone from the active listing: it completed (or the listing is wrong). Ask, never assume.
        per_job_calls += 1
        statuses = ctx.client.job_statuses(remote_id)
        newest = statuses[0] if statuses else {}
        status = str(newest.get("status") or "")
        job = ctx.store.get(job_id)
        if job is None:
            continue
        if map_remote_status(status) is JobState.STAGING_OUT:
            _apply(ctx, job, status, newest.get("statusReason"), None, run_window(statuses))
        else:
            ctx.job_log(job).warning("remote job missing from the active listing", newest_status=status)
    return per_job_calls
