"""Stage-out: the exit code, the rest of the log, the outputs (confined), then the final state."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from burst_agent import failpoints
from burst_agent.command_wrapper import EXIT_CODE_FILE
from burst_agent.lifecycle import JobState, failure_reason
from burst_agent.pipeline.context import REMOTE_LOG, Context
from burst_agent.pipeline.progress import TransferProgress
from burst_agent.pipeline.submit import PermanentJobError
from burst_agent.staging.jobplan import CONTROL_FILES
from burst_agent.staging.outputs import (
    DEFAULT_SKIP,
    OutputItem,
    StageOutReport,
    download_all,
    select_outputs,
)
from burst_agent.store import JobRecord

SKIP = DEFAULT_SKIP | CONTROL_FILES | {REMOTE_LOG}


class StageOutIncomplete(Exception):
    """Some outputs could not be fetched yet; the job stays in staging-out and is retried."""


def _by_path(files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(f.get("relativePath") or "").removeprefix("./"): f for f in files}


def fetch_small(ctx: Context, remote: dict[str, Any]) -> bytes:
    """Download one small remote file (exit code, log) into memory through a private temp file."""
    with tempfile.TemporaryDirectory(prefix="burst-small-", dir=ctx.spool.tmp) as tmp:
        dest = Path(tmp) / "file"
        ctx.client.download_file(str(remote["id"]), dest, expected_md5=remote.get("md5") or None)
        return dest.read_bytes()


def append_log(path: str | None, data: bytes) -> None:
    """Append remote log bytes to the job's stdout file (created if missing)."""
    if not path or not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _exit_code(ctx: Context, files: dict[str, dict[str, Any]]) -> int | None:
    remote = files.get(EXIT_CODE_FILE)
    if remote is None:
        return None
    try:
        return int(fetch_small(ctx, remote).decode("ascii").strip())
    except ValueError:
        return None


def _finish_log(ctx: Context, job: JobRecord, files: dict[str, dict[str, Any]]) -> JobRecord:
    remote = files.get(REMOTE_LOG)
    if remote is None or int(remote.get("decryptedSize") or 0) <= job.log_offset:
        return job
    data = fetch_small(ctx, remote)
    append_log(job.stdout_path, data[job.log_offset :])
    return ctx.store.update(job.id, log_offset=len(data))


def _download(ctx: Context, job: JobRecord, files: list[dict[str, Any]]) -> StageOutReport:
    selection = select_outputs(files, (job.job_spec or {}).get("input_md5", {}), skip=SKIP)
    assert job.output_dir is not None  # narrowing: every recorded job has an output dir

    tracker = TransferProgress(ctx.store, job.id)

    def download(item: OutputItem, dest: Path) -> None:
        report = tracker.for_file(item.file_id)

        def progress(done: int, total: int | None) -> None:
            report(done, total)
            if done and total and done < total:
                failpoints.hit("download.midway")

        started = time.monotonic()
        result = ctx.client.download_file(
            item.file_id, dest, expected_md5=item.md5, expected_size=item.size or None, progress=progress
        )
        ctx.metrics.transferred("download", result.size - result.resumed_from, time.monotonic() - started)

    report = download_all(
        selection.items,
        download=download,
        concurrency=ctx.config.staging.download_concurrency,
        root=Path(job.output_dir),
        margin_bytes=ctx.config.staging.free_space_margin_bytes,
    )
    report.refused.extend(selection.refused)
    tracker.finish()
    return report


def _final(job: JobRecord, exit_code: int | None) -> tuple[JobState, str | None, str | None]:
    """(final state, reason, failure class for metrics)."""
    if job.cancel_requested_at is not None:
        return JobState.CANCELLED, "cancelled on request", None
    hidden = failure_reason(job.remote_status_reason)
    if hidden:
        return JobState.FAILED, f"Rescale: {hidden}", "remote"
    if exit_code is None:
        return JobState.FAILED, "no exit code came back: the script did not run to its end", "remote"
    if exit_code != 0:
        return JobState.FAILED, f"the script exited with code {exit_code}", "exit_code"
    return JobState.DONE, None, None


def _require_output_dir(job: JobRecord) -> None:
    """A job dir deleted while the job ran is not coming back: fail the job rather than retry forever.
    (Other errors, e.g. a stale NFS handle, stay retryable.)"""
    assert job.output_dir is not None  # narrowing: every recorded job has an output dir
    try:
        problem = None if stat.S_ISDIR(os.stat(job.output_dir).st_mode) else "is no longer a directory"
    except (FileNotFoundError, NotADirectoryError):
        problem = "no longer exists"
    if problem:
        reason = f"output directory {job.output_dir} {problem}; the outputs stay on Rescale with job " \
                 f"{job.remote_job_id}"
        raise PermanentJobError(reason, stage="stage_out")


def collect(ctx: Context, job: JobRecord) -> JobRecord:
    """STAGING_OUT -> DONE | FAILED | CANCELLED once every wanted output is safely in place."""
    assert job.remote_job_id is not None  # narrowing: only submitted jobs reach staging-out
    log = ctx.job_log(job)
    _require_output_dir(job)
    files = list(ctx.client.iter_job_files(job.remote_job_id))
    named = _by_path(files)
    exit_code = _exit_code(ctx, named)
    job = _finish_log(ctx, job, named)
    pull = job.cancel_requested_at is None or ctx.config.staging.pull_outputs_on_cancel
    report = _download(ctx, job, files) if pull else StageOutReport()
    for problem in report.refused:
        log.warning("output refused", path=problem.path, reason=problem.reason)
        note = f"burst-agent: output {problem.path!r} refused: {problem.reason}\n"
        append_log(job.stdout_path, note.encode())
    if report.failed:
        raise StageOutIncomplete("; ".join(f"{p.path}: {p.reason}" for p in report.failed))
    state, reason, reason_class = _final(job, exit_code)
    if report.refused:
        refused = ", ".join(p.path for p in report.refused)
        reason = f"{reason + '; ' if reason else ''}outputs refused (unsafe paths): {refused}"
    job = ctx.finish(job, state, reason or "outputs collected", reason_class=reason_class,
                     exit_code=exit_code, failure_reason=reason)
    log.info("job finished", state=state.value, exit_code=exit_code, outputs=len(report.done),
             unchanged=len(report.unchanged), refused=len(report.refused))
    ctx.spool.retire(job.entry)
    return job
