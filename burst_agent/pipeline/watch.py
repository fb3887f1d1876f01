"""Watch: one paginated listing of active remote jobs per cycle drives every job's state.

A pure core (`missing`, `interpret`, `merge`) decides from what the API said; `poll` fetches and
applies, one job's trouble kept from the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from burst_agent.lifecycle import IllegalTransition, JobState, is_allowed, map_remote_status
from burst_agent.pipeline.cancel import end_vanished
from burst_agent.pipeline.context import Context
from burst_agent.record import JobRecord, Remote
from burst_agent.rescale.client import PAGE_SIZE
from burst_agent.rescale.errors import NotFoundError

# (job id, remote job id, state, last known remote status), as JobStore.active_remote_brief gives them.
Brief = tuple[str, str, JobState, str | None]
GONE = "gone"  # a statuses answer meaning 404: Rescale has no such job

LIST_PAGE_SIZE = PAGE_SIZE


def _content(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return str(value.get("content") or "") if isinstance(value, dict) else ""


def _epoch(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def run_window(statuses: list[dict[str, Any]]) -> dict[str, float]:
    """started_at / finished_at (Remote fields) from a status history (Executing .. Completed)."""
    found: dict[str, float] = {}
    for item in statuses:  # newest first: the last match is the earliest
        when = _epoch(item.get("statusDate"))
        status = str(item.get("status") or "").lower()
        if when is not None and status == "executing":
            found["started_at"] = when
        elif when is not None and status == "completed" and "finished_at" not in found:
            found["finished_at"] = when
    return found


@dataclass(frozen=True)
class Seen:
    """What the API said of one job this cycle: a new status, or that the job is gone (404)."""

    job_id: str
    status: str = ""
    reason: str | None = None
    cluster: str | None = None
    window: Mapping[str, float] = field(default_factory=dict)
    gone: bool = False
    missing: bool = False  # not in the listing, and its statuses do not say it completed


def missing(active: Sequence[Brief], listing: Mapping[str, Any]) -> list[str]:
    """Remote ids of active jobs the listing does not show: their statuses must be asked for."""
    return [remote_id for _id, remote_id, _state, _known in active if remote_id not in listing]


def interpret(active: Sequence[Brief], listing: Mapping[str, Any],
              statuses: Mapping[str, Sequence[dict[str, Any]] | str]) -> list[Seen]:
    """The changes a cycle found: jobs whose listed status changed, and those missing from the listing
    (completed per their statuses, gone, or missing for no reason the statuses give)."""
    seen: list[Seen] = []
    for job_id, remote_id, _state, known in active:
        item = listing.get(remote_id)
        if item is not None:
            status = _content(item, "jobStatus")
            if status and status != known:
                seen.append(Seen(job_id, status, None, _content(item, "clusterStatusDisplay") or None))
            continue
        answer = statuses.get(remote_id)
        if answer is None:
            continue  # its statuses could not be fetched: that job's trouble, logged by poll
        if answer == GONE:
            seen.append(Seen(job_id, gone=True))
            continue
        newest = answer[0] if answer else {}
        status = str(newest.get("status") or "")
        if map_remote_status(status) is JobState.STAGING_OUT:
            seen.append(Seen(job_id, status, newest.get("statusReason"), None, run_window(list(answer))))
        else:
            seen.append(Seen(job_id, status, missing=True))
    return seen


def merge(job: JobRecord, seen: Seen, now: float) -> tuple[JobState | None, Remote]:
    """(the state to move to, or None; the remote status to record) for what was seen of `job`."""
    remote = replace(job.remote, status=seen.status)
    if seen.reason is not None:
        remote = replace(remote, reason=seen.reason)
    target = map_remote_status(seen.status)
    if target is JobState.RUNNING and seen.status.lower() == "executing" and remote.started_at is None:
        remote = replace(remote, started_at=now)
    if target is JobState.STAGING_OUT:
        remote = replace(remote, finished_at=now)
    remote = replace(remote, **seen.window)
    moves = target is not None and target is not job.state and is_allowed(job.state, target)
    return (target if moves else None), remote


def _apply(ctx: Context, job: JobRecord, seen: Seen) -> None:
    """Record a remote status and move the job if the status maps to a new, allowed state."""
    target, remote = merge(job, seen, ctx.clock())
    log = ctx.job_log(job)
    if target is not None:
        why = f"remote {seen.status}" + (f": {seen.reason}" if seen.reason else "")
        try:
            ctx.transition(job, target, why, remote=remote)
        except IllegalTransition:  # a worker moved it meanwhile (a cancel's stop): the status still counts
            ctx.store.record_remote(job.id, remote)
        log.info("remote status", status=seen.status, reason=seen.reason, cluster=seen.cluster,
                 state=target.value)
    elif seen.status != job.remote.status:
        ctx.store.record_remote(job.id, remote)
        log.info("remote status", status=seen.status, reason=seen.reason, cluster=seen.cluster)


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


def _end_gone(ctx: Context, job_id: str, claim: Claim) -> None:
    if claim.try_add(job_id):  # else a worker holds it: the next cycle ends it
        try:
            job = ctx.store.get(job_id)
            if job is not None:
                end_vanished(ctx, job)
        finally:
            claim.discard(job_id)


def _statuses(ctx: Context, remote_id: str) -> list[dict[str, Any]] | str:
    try:
        return list(ctx.client.job_statuses(remote_id))
    except NotFoundError:
        return GONE


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
    by_remote = {remote_id: job_id for job_id, remote_id, _state, _known in active}
    statuses: dict[str, list[dict[str, Any]] | str] = {}
    lookups = missing(active, listing)
    for remote_id in lookups:
        try:
            statuses[remote_id] = _statuses(ctx, remote_id)
        except Exception as exc:
            trouble.failed(ctx, by_remote[remote_id], exc)
    failed = {by_remote[r] for r in lookups if r not in statuses}
    seen = {s.job_id: s for s in interpret(active, listing, statuses)}
    for job_id, _remote_id, _state, _known in active:
        if job_id in failed:
            continue
        try:
            if job_id in seen:
                _act(ctx, seen[job_id], claim or _NoClaim())
        except Exception as exc:
            trouble.failed(ctx, job_id, exc)
        else:
            trouble.ok(ctx, job_id)
    return len(lookups)


def _act(ctx: Context, seen: Seen, claim: Claim) -> None:
    if seen.gone:
        _end_gone(ctx, seen.job_id, claim)
        return
    job = ctx.store.get(seen.job_id)
    if job is None:
        return
    if seen.missing:
        ctx.job_log(job).warning("remote job missing from the active listing", newest_status=seen.status)
    else:
        _apply(ctx, job, seen)
