"""Stage-out: the exit code, the rest of the log, the outputs (confined), then the final state."""

from __future__ import annotations

import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from burst_agent import failpoints
from burst_agent.command_wrapper import EXIT_CODE_FILE
from burst_agent.lifecycle import SUCCESS_REASONS, JobState, failure_reason
from burst_agent.pipeline.cancel import ended_if_gone
from burst_agent.pipeline.context import REMOTE_LOG, Context
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.pipeline.progress import TransferProgress
from burst_agent.record import JobRecord, plan_of
from burst_agent.rescale.errors import SizeMismatchError, TransientError
from burst_agent.staging.jobplan import CONTROL_FILES
from burst_agent.staging.outputs import (
    DEFAULT_SKIP,
    InsufficientSpaceError,
    MalformedRecord,
    OutputItem,
    Problem,
    RemoteFile,
    StageOutReport,
    check_record,
    download_all,
    select_outputs,
)
from burst_agent.staging.packed import ArchiveRefused, find_archive, unpack_outputs, without
from burst_agent.staging.safepath import display

SKIP = DEFAULT_SKIP | CONTROL_FILES | {REMOTE_LOG}
T = TypeVar("T")

# Stage-out passes one file may fail before the job ends without it, by the error's type (the first
# class of its MRO listed here; None: no limit). A proven size lie is final at once, since the same
# server will lie again; an outage (TransientError: 5xx, 429, resets) is waited out like any outage.
ATTEMPTS: dict[type[BaseException], int | None] = {
    SizeMismatchError: 1,
    TransientError: None,
    BaseException: 3,
}
# The wrapper writes one line, 0-255; anything larger is not an exit code and is never downloaded.
EXIT_CODE_MAX_BYTES = 16
_EXIT_CODE = re.compile(rb"\s*([0-9]{1,3})\s*")
# statusReason words (lower case) of a stop on Rescale's side ("Job was stopped by user", "Job force
# stopped by user", "Job shut down by user; ..."): not a failure of the script, nor a cancel of ours.
REMOTE_STOP_WORDS = ("stopped", "shut down", "force stop")
# Files named in a job's reason and in the user's log, per kind; the agent log has them all.
NAMES_SHOWN = 20


class StageOutIncomplete(Exception):
    """Some outputs could not be fetched yet; the job stays in staging-out and is retried."""


def attempts_allowed(error: type[BaseException] | None) -> int | None:
    """How many failed passes ATTEMPTS gives a file that failed with an error of this type."""
    kind = next(k for k in (error or Exception).__mro__ if k in ATTEMPTS)
    return ATTEMPTS[kind]


class FileFailures:
    """Failed stage-out passes per (job, output), and the outputs given up, with their last problem.

    In memory: the store has no place for them, so an agent restart counts afresh (still bounded per
    run), and a job's counts go when it ends.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lost: dict[tuple[str, str], Problem] = {}
        self._lock = threading.Lock()

    def failed(self, job_id: str, problem: Problem) -> bool:
        """Count one failed pass; True if the output is now given up."""
        key, limit = (job_id, problem.path), attempts_allowed(problem.error)
        with self._lock:
            count = self._counts[key] = self._counts.get(key, 0) + 1
            if limit is not None and count >= limit:
                self._lost[key] = problem
                return True
        return False

    def lost(self, job_id: str, path: str) -> Problem | None:
        with self._lock:
            return self._lost.get((job_id, path))

    def forget(self, job_id: str) -> None:
        with self._lock:
            for store in (self._counts, self._lost):
                for key in [k for k in store if k[0] == job_id]:
                    del store[key]


FAILURES = FileFailures()


@dataclass
class _Outcome:
    """What one stage-out pass could not deliver: refused (final), lost (given up), retry (next pass)."""

    job_id: str
    refused: list[Problem] = field(default_factory=list)
    lost: list[Problem] = field(default_factory=list)
    retry: list[Problem] = field(default_factory=list)

    def failed(self, problem: Problem) -> None:
        (self.lost if FAILURES.failed(self.job_id, problem) else self.retry).append(problem)

    def given_up(self, path: str) -> bool:
        problem = FAILURES.lost(self.job_id, path)
        if problem is not None:
            self.lost.append(problem)
        return problem is not None

    def run(self, path: str, step: Callable[[], T], default: T) -> T:
        """step(), or `default` once it failed (counted) or was given up before."""
        if self.given_up(path):
            return default
        try:
            return step()
        except Exception as exc:  # one control file must not wedge the stage-out either
            self.failed(Problem(path, display(f"{type(exc).__name__}: {exc}"), type(exc)))
            return default


def fetch_small(ctx: Context, remote: RemoteFile) -> bytes:
    """Download one small remote file (exit code, log) into memory through a private temp file."""
    with tempfile.TemporaryDirectory(prefix="burst-small-", dir=ctx.spool.tmp) as tmp:
        dest = Path(tmp) / "file"
        ctx.client.download_file(remote.file_id, dest, expected_md5=remote.md5, expected_size=remote.size)
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


def _control_files(files: list[Any], outcome: _Outcome) -> dict[str, RemoteFile]:
    """The exit-code and log file objects, checked; a malformed or oversized one is refused."""
    control: dict[str, RemoteFile] = {}
    for index, remote in enumerate(files):
        try:
            record = check_record(remote, index)
        except MalformedRecord as exc:
            if exc.path.removeprefix("./") in (EXIT_CODE_FILE, REMOTE_LOG):
                outcome.refused.append(Problem(exc.path, exc.reason))
            continue
        name = record.path.removeprefix("./")
        if name == EXIT_CODE_FILE and record.size > EXIT_CODE_MAX_BYTES:
            outcome.refused.append(Problem(name, f"declares {record.size} bytes: not an exit code"))
        elif name in (EXIT_CODE_FILE, REMOTE_LOG):
            control[name] = record
    return control


# Exit codes read by a stage-out pass that did not end (a spent budget, a file to retry), by (job id,
# file id, md5): the next pass does not spend a request on it again. Forgotten when the job ends.
_EXIT_CODES: dict[tuple[str, str, str], int | None] = {}


def _exit_code(ctx: Context, job: JobRecord, remote: RemoteFile | None) -> int | None:
    if remote is None:
        return None
    key = (job.id, remote.file_id, remote.md5)
    if key not in _EXIT_CODES:
        match = _EXIT_CODE.fullmatch(fetch_small(ctx, remote))
        _EXIT_CODES[key] = int(match.group(1)) if match and int(match.group(1)) <= 255 else None
    return _EXIT_CODES[key]


def _forget(job_id: str) -> None:
    FAILURES.forget(job_id)
    for key in [k for k in _EXIT_CODES if k[0] == job_id]:
        del _EXIT_CODES[key]


def _finish_log(ctx: Context, job: JobRecord, remote: RemoteFile | None) -> JobRecord:
    offset = job.progress.log_offset
    if remote is None or remote.size <= offset:
        return job
    data = fetch_small(ctx, remote)
    append_log(plan_of(job).stdout_path, data[offset:])
    return ctx.store.record_progress(job.id, log_offset=len(data))


def _merged(*reports: StageOutReport) -> StageOutReport:
    merged = StageOutReport()
    for report in reports:
        for name in ("done", "unchanged", "refused", "failed"):
            getattr(merged, name).extend(getattr(report, name))
    return merged


def _unpack(ctx: Context, job: JobRecord, files: list[Any], outcome: _Outcome,
            download: Callable[[OutputItem, Path], None]) -> tuple[StageOutReport, frozenset[str]]:
    """The packed outputs, if the command made them: (what unpacking did, the names the archive held).

    An archive that cannot be used falls back to the loose files. When it was their only copy (the
    job ran with keep_outputs_on_rescale "archive") it is an output like any other: refused, or failed
    and retried (ATTEMPTS) while the loose files that are listed come one by one.
    """
    archive = find_archive(files)
    if archive is None or (archive.sole and outcome.given_up(display(archive.path))):
        return StageOutReport(), frozenset()
    log, path = ctx.job_log(job), display(archive.path)
    try:
        if archive.record is None:
            raise ArchiveRefused(archive.problem or "malformed file object")
        unpacked = unpack_outputs(
            archive.record, download=download, root=Path(plan_of(job).output_dir),
            uploaded_inputs=job.inputs.md5s if job.inputs else {}, skip=SKIP,
            concurrency=ctx.config.staging.download_concurrency,
            margin_bytes=ctx.config.staging.free_space_margin_bytes,
        )
    except InsufficientSpaceError:
        raise
    except ArchiveRefused as exc:
        if archive.sole:
            outcome.refused.append(Problem(path, exc.reason))
        log.warning("outputs archive refused, fetching the files one by one", path=path, reason=exc.reason)
    except Exception as exc:  # its download: the loose files may still come
        reason = display(f"{type(exc).__name__}: {exc}")
        if archive.sole:
            outcome.failed(Problem(path, reason, type(exc)))
        log.warning("outputs archive not fetched, fetching the files one by one", path=path, reason=reason)
    else:
        log.info("outputs unpacked", path=path, members=len(unpacked.covered))
        return unpacked.report, unpacked.covered
    return StageOutReport(), frozenset()


def _download(ctx: Context, job: JobRecord, files: list[Any], outcome: _Outcome) -> StageOutReport:
    tracker = TransferProgress(ctx.store, job.id)

    def download(item: OutputItem, dest: Path) -> None:
        report = tracker.for_file(item.file_id)

        def progress(done: int, total: int | None) -> None:
            report(done, total)
            if done and total and done < total:
                failpoints.hit("download.midway")

        started = time.monotonic()
        staging = ctx.config.staging
        result = ctx.client.download_file(
            item.file_id, dest, expected_md5=item.md5, expected_size=item.size, progress=progress,
            range_connections=staging.range_connections, range_min_bytes=staging.range_min_bytes,
        )
        ctx.metrics.transferred("download", result.size - result.resumed_from, time.monotonic() - started)

    packed, covered = _unpack(ctx, job, files, outcome, download)
    selection = select_outputs(without(files, covered), job.inputs.md5s if job.inputs else {}, skip=SKIP)
    items = [item for item in selection.items if not outcome.given_up(str(item.rel))]
    report = download_all(
        items,
        download=download,
        concurrency=ctx.config.staging.download_concurrency,
        root=Path(plan_of(job).output_dir),
        margin_bytes=ctx.config.staging.free_space_margin_bytes,
    )
    report = _merged(packed, report)
    outcome.refused += report.refused + selection.refused
    for problem in report.failed:
        outcome.failed(problem)
    tracker.finish()
    return report


def final_state(cancelled: bool, remote_reason: str | None, exit_code: int | None
                ) -> tuple[JobState, str | None, str | None]:
    """(final state, reason, failure class for metrics) of a job whose remote run ended.

    A stop nobody here asked for (someone in Rescale's web UI) fails the job under the "cancelled"
    class, with Rescale's own words first: the exit code (143 after a SIGTERM) only says how it died.
    """
    if cancelled:
        return JobState.CANCELLED, "cancelled on request", None
    said = (remote_reason or "").strip()
    hidden = failure_reason(said)
    if hidden:
        return JobState.FAILED, f"Rescale: {hidden}", "remote"
    if exit_code == 0:
        return JobState.DONE, None, None
    how = (f"the script exited with code {exit_code}" if exit_code is not None
           else "no exit code came back: the script did not run to its end")
    if any(word in said.lower() for word in REMOTE_STOP_WORDS):
        reason = f"stopped on Rescale, not by burst-agent (Rescale: {said}); {how}"
        return JobState.FAILED, reason, "cancelled"
    if said and not any(ok in said.lower() for ok in SUCCESS_REASONS):
        how += f" (Rescale: {said})"
    return JobState.FAILED, how, "exit_code" if exit_code is not None else "remote"


def _require_output_dir(job: JobRecord) -> None:
    """A job dir deleted while the job ran is not coming back: fail the job rather than retry forever.
    (Other errors, e.g. a stale NFS handle, stay retryable.)"""
    output_dir = plan_of(job).output_dir
    try:
        problem = None if stat.S_ISDIR(os.stat(output_dir).st_mode) else "is no longer a directory"
    except (FileNotFoundError, NotADirectoryError):
        problem = "no longer exists"
    if problem:
        reason = f"output directory {output_dir} {problem}; the outputs stay on Rescale with job " \
                 f"{job.remote_job_id}"
        raise PermanentJobError(reason, stage="stage_out")


def _names(problems: list[Problem], *, reasons: bool = True) -> str:
    shown = [f"{p.path} ({p.reason})" if reasons else p.path for p in problems[:NAMES_SHOWN]]
    more = len(problems) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _report(ctx: Context, job: JobRecord, outcome: _Outcome) -> list[str]:
    """Log every file that did not arrive; tell the user (their log, the job's reason) the first few."""
    log = ctx.job_log(job)
    kinds = (("refused", "output refused", outcome.refused), ("not delivered", "output not delivered",
                                                               outcome.lost))
    notes, reasons = [], []
    for verdict, event, problems in kinds:
        for problem in problems:
            log.warning(event, path=problem.path, reason=problem.reason)
        notes += [f"burst-agent: output '{p.path}' {verdict}: {p.reason}\n" for p in problems[:NAMES_SHOWN]]
        if len(problems) > NAMES_SHOWN:
            notes.append(f"burst-agent: ... and {len(problems) - NAMES_SHOWN} more outputs {verdict}\n")
        if problems:
            reasons.append(f"outputs {verdict}: {_names(problems, reasons=verdict != 'refused')}")
    append_log(plan_of(job).stdout_path, "".join(notes).encode())
    return reasons


def collect(ctx: Context, job: JobRecord) -> JobRecord:
    """STAGING_OUT -> DONE | FAILED | CANCELLED once every wanted output is in place or given up.

    A refused record or name is final; a file that keeps failing is given up after ATTEMPTS passes. The
    job then ends with what arrived, its reason naming what did not.
    """
    assert job.remote_job_id is not None  # narrowing: only submitted jobs reach staging-out
    log = ctx.job_log(job)
    _require_output_dir(job)
    remote_id = job.remote_job_id
    files: list[Any] = []
    ended = ended_if_gone(ctx, job, lambda: files.extend(ctx.client.iter_job_files(remote_id)))
    if ended is not None:
        _forget(job.id)
        return ended
    outcome = _Outcome(job.id)
    control = _control_files(files, outcome)
    exit_code = outcome.run(EXIT_CODE_FILE, lambda: _exit_code(ctx, job, control.get(EXIT_CODE_FILE)), None)
    job = outcome.run(REMOTE_LOG, lambda: _finish_log(ctx, job, control.get(REMOTE_LOG)), job)
    pull = job.cancel_requested_at is None or ctx.config.staging.pull_outputs_on_cancel
    report = _download(ctx, job, files, outcome) if pull else StageOutReport()
    if outcome.retry:
        raise StageOutIncomplete(_names(outcome.retry))
    _forget(job.id)
    state, reason, reason_class = final_state(job.cancel_requested_at is not None, job.remote.reason,
                                              exit_code)
    reason = "; ".join(filter(None, [reason, *_report(ctx, job, outcome)])) or None
    job = ctx.finish(job, state, reason or "outputs collected", reason_class=reason_class,
                     exit_code=exit_code, failure_reason=reason)
    log.info("job finished", state=state.value, exit_code=exit_code, outputs=len(report.done),
             unchanged=len(report.unchanged), refused=len(outcome.refused), lost=len(outcome.lost))
    return job
