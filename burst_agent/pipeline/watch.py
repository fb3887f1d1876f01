"""Watch: one paginated listing of active remote jobs per cycle drives every job's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from burst_agent.lifecycle import JobState, is_allowed, map_remote_status
from burst_agent.pipeline.cancel import end_vanished
from burst_agent.pipeline.context import Context
from burst_agent.rescale.errors import NotFoundError
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


class Claim(Protocol):
    def try_add(self, job_id: str) -> bool: ...
    def discard(self, job_id: str) -> None: ...


class _NoClaim:
    def try_add(self, job_id: str) -> bool:
        return True

    def discard(self, job_id: str) -> None:
        pass


class PollTrouble:
    """The last error of each job whose own status check failed: logged when it starts or changes,
    and when it clears, not every cycle (one job down for hours must not flood the log)."""

    def __init__(self) -> None:
        self._errors: dict[str, str] = {}

    def failed(self, ctx: Context, job_id: str, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if self._errors.get(job_id) != text:
            ctx.log.warning("status check of one job failed; retried next cycle", job=job_id,
                            error=str(exc), error_type=type(exc).__name__)
        self._errors[job_id] = text

    def ok(self, ctx: Context, job_id: str) -> None:
        if self._errors.pop(job_id, None) is not None:
            ctx.log.info("status check of the job works again", job=job_id)

    def keep(self, job_ids: set[str]) -> None:
        self._errors = {k: v for k, v in self._errors.items() if k in job_ids}


TROUBLE = PollTrouble()


def _check_missing(ctx: Context, job_id: str, remote_id: str, claim: Claim) -> None:
    """A job gone from the active listing: it completed, or vanished (404), or the listing is wrong."""
    try:
        statuses = ctx.client.job_statuses(remote_id)
    except NotFoundError:
        if claim.try_add(job_id):  # else a worker holds it: the next cycle ends it
            try:
                job = ctx.store.get(job_id)
                if job is not None:
                    end_vanished(ctx, job)
            finally:
                claim.discard(job_id)
        return
    newest = statuses[0] if statuses else {}
    status = str(newest.get("status") or "")
    job = ctx.store.get(job_id)
    if job is None:
        return
    if map_remote_status(status) is JobState.STAGING_OUT:
        _apply(ctx, job, status, newest.get("statusReason"), None, run_window(statuses))
    else:
        ctx.job_log(job).warning("remote job missing from the active listing", newest_status=status)


def poll(ctx: Context, claim: Claim | None = None, trouble: PollTrouble = TROUBLE) -> int:
    """One cycle; returns the number of API calls it made for the status of individual jobs.

    The listing is everyone's (its failure fails the cycle); anything about one job is that job's
    trouble: logged (see PollTrouble) and retried next cycle, never in the way of the others.
    """
    active = ctx.store.active_remote_brief()
    trouble.keep({job_id for job_id, *_rest in active})
    if not active:
        return 0
    listing = {
        str(item["id"]): item
        for item in ctx.client.iter_jobs(state="not_completed", page_size=LIST_PAGE_SIZE)
        if isinstance(item, dict) and "id" in item
    }
    per_job_calls = 0
    for job_id, remote_id, _state, known_status in active:
        item = listing.get(remote_id)
        try:
            if item is None:
                per_job_calls += 1
                _check_missing(ctx, job_id, remote_id, claim or _NoClaim())
            else:
                status = _content(item, "jobStatus")
                job = ctx.store.get(job_id) if status and status != known_status else None
                if job is not None:
                    _apply(ctx, job, status, None, _content(item, "clusterStatusDisplay") or None)
        except Exception as exc:
            trouble.failed(ctx, job_id, exc)
        else:
            trouble.ok(ctx, job_id)
    return per_job_calls
