"""Stage-in, then create, tag, assign and submit the remote job exactly once (crash-safe)."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from burst_agent import failpoints
from burst_agent.command_wrapper import SCRIPT_NAME
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.pipeline.hold import hold
from burst_agent.pipeline.progress import TransferProgress
from burst_agent.record import Inputs, JobRecord, Plan, attempt_key, plan_of
from burst_agent.relay import INPUT_BUNDLE, INPUT_MANIFEST
from burst_agent.rescale.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitedError,
    TransientError,
    ValidationError,
)
from burst_agent.staging.bundle import InputChangedError, SendReader, placement_script, send, stage_in
from burst_agent.staging.inputs import BUNDLE_NAME, InputFile, InputPlan, InputSelectionError
from burst_agent.staging.jobplan import job_plan
from burst_agent.staging.safepath import safe_relpath

RESTAGE_REASON = "cached inputs vanished on Rescale: staging them again"
T = TypeVar("T")


def _input_plan(ctx: Context, plan: Plan, script_file: Path) -> InputPlan:
    exclude = [Path(p) for p in (plan.stdout_path, plan.stderr_path) if p]
    workdir = Path(plan.inputs_from) if plan.inputs_from else None
    try:
        return job_plan(workdir, plan.script, script_file, ctx.config.staging, exclude)
    except (InputSelectionError, OSError) as exc:
        raise PermanentJobError(f"inputs: {exc}", stage="stage_in") from exc


_LARGE_NAME = re.compile(r"input-large-[0-9]{1,6}")
_MANIFEST_MAX = 16 * 1024 * 1024
_ENTRY_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _EntryFiles:
    """Opens the relay's files in a claimed entry: once each, relative to a directory fd the agent holds.

    The entry directory is the user's own, and a user who kept an fd to it can rename anything inside
    it at any moment, so nothing here goes by path twice: each file is opened with O_NOFOLLOW and
    checked on the open fd (a regular file, the job owner's), and then hashed and uploaded from that fd.
    The manifest and the bundle are written fresh by the relay and must have one link; a large input may
    be a hard link to the user's own file (the relay does that to avoid copying a mesh of gigabytes):
    its bytes are read from the one fd, so the other link changes nothing the agent relies on.
    """

    def __init__(self, entry_dir: Path, owner_uid: int) -> None:
        self.owner_uid = owner_uid
        self.dir_fd = os.open(entry_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.dir_fd)

    def open(self, name: str, *, one_link: bool) -> tuple[BinaryIO, os.stat_result]:
        try:
            fd = os.open(name, _ENTRY_OPEN, dir_fd=self.dir_fd)
        except OSError as exc:
            raise PermanentJobError(f"inputs: cannot open {name!r} ({exc.strerror}; a symlink?)",
                                    stage="stage_in") from exc
        st = os.fstat(fd)
        problem = ("is not a regular file" if not stat.S_ISREG(st.st_mode)
                   else f"is owned by uid {st.st_uid}, not the job's owner" if st.st_uid != self.owner_uid
                   else f"has {st.st_nlink} hard links" if one_link and st.st_nlink != 1 else None)
        if problem:
            os.close(fd)
            raise PermanentJobError(f"inputs: {name!r} {problem}", stage="stage_in")
        return os.fdopen(fd, "rb"), st

    def manifest(self) -> dict[str, Any]:
        handle, _st = self.open(INPUT_MANIFEST, one_link=True)
        with handle:
            data = handle.read(_MANIFEST_MAX + 1)
        if len(data) > _MANIFEST_MAX:
            raise ValueError(f"{INPUT_MANIFEST} is larger than {_MANIFEST_MAX} bytes")
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ValueError(f"{INPUT_MANIFEST} must hold a JSON object")
        return value

    def large(self, item: Any) -> InputFile:
        name = str(item["file"])
        if not _LARGE_NAME.fullmatch(name):
            raise ValueError(f"unexpected input file name {name!r}")
        return InputFile(safe_relpath(str(item["rel"])), Path(name), 0)

    def open_member(self, member: InputFile) -> tuple[BinaryIO, os.stat_result]:
        return self.open(str(member.source), one_link=False)


def _prepared_inputs(
    ctx: Context, job: JobRecord, upload: Any, cache_get: Any, cache_put: Any
) -> tuple[list[str], dict[str, str], str]:
    """The relay's prepared inputs: its bundle (uploaded as is) and large files (cached per owner)."""
    files = _EntryFiles(ctx.spool.claimed / job.entry, job.owner_uid)
    try:
        try:
            manifest = files.manifest()
            large = [files.large(item) for item in manifest.get("large", [])]
            md5s = {str(k): str(v) for k, v in dict(manifest.get("bundle_md5s", {})).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            reason = f"inputs: the relay's input manifest is unusable: {exc}"
            raise PermanentJobError(reason, stage="stage_in") from exc
        plan = InputPlan(workdir=ctx.spool.claimed / job.entry, bundle_members=[], large_files=large)
        result = stage_in(plan, upload=upload, cache_get=cache_get, cache_put=cache_put,
                          tmpdir=ctx.spool.tmp, owner_uid=job.owner_uid, opener=files.open_member)
        handle, st = files.open(INPUT_BUNDLE, one_link=True)
        with handle:
            bundle_id, _sent = send(handle, st.st_size, BUNDLE_NAME, upload)
    except InputChangedError as exc:
        raise PermanentJobError(f"inputs: {exc}", stage="stage_in") from exc
    finally:
        files.close()
    return [bundle_id, *result.file_ids], {**md5s, **result.input_md5}, placement_script(plan)


def stage_inputs(ctx: Context, job: JobRecord) -> JobRecord:
    """Upload the script and the selected inputs; the file ids are persisted before create uses them."""
    plan = plan_of(job)
    if job.state is JobState.TRANSLATED:
        job = ctx.transition(job, JobState.STAGING_IN, "uploading inputs")
    log = ctx.job_log(job)
    store = ctx.store

    cached: dict[str, str] = {}  # file id -> cache key of each large input, checked if create refuses

    def cache_get(key: str) -> str | None:
        hit = store.cached_upload(key)
        if hit:
            cached[hit.remote_file_id] = key
        return hit.remote_file_id if hit else None

    def cache_put(key: str, file_id: str, size: int) -> None:
        store.remember_upload(key, file_id, size)
        cached[file_id] = key

    tracker = TransferProgress(store, job.id)

    def upload(reader: SendReader, name: str) -> dict[str, Any]:
        report = tracker.for_file(name)

        def progress(done: int, total: int | None) -> None:
            report(done, total)
            if done and total and done < total:
                failpoints.hit("upload.midway")

        started = time.monotonic()
        meta = ctx.client.upload_file(reader, name=name, progress=progress)
        ctx.metrics.transferred("upload", reader.size, time.monotonic() - started)
        return meta

    if plan.delivery == "relay":
        file_ids, md5s, placement = _prepared_inputs(ctx, job, upload, cache_get, cache_put)
    else:
        with tempfile.TemporaryDirectory(prefix="burst-stage-", dir=ctx.spool.tmp) as tmp:
            script_file = Path(tmp) / SCRIPT_NAME
            script_file.write_text(plan.script, encoding="utf-8")
            selection = _input_plan(ctx, plan, script_file)
            for warning in selection.warnings:
                log.warning("input skipped", detail=warning)
            try:
                result = stage_in(selection, upload=upload, cache_get=cache_get, cache_put=cache_put,
                                  tmpdir=Path(tmp), owner_uid=job.owner_uid)
            except InputChangedError as exc:
                raise PermanentJobError(f"inputs: {exc}", stage="stage_in") from exc
        file_ids, md5s, placement = result.file_ids, result.input_md5, placement_script(selection)
    log.info("inputs staged", uploads=len(file_ids))
    store.record_progress(job.id, transfer_done=0, transfer_total=0)
    return ctx.transition(job, JobState.STAGED, f"{len(file_ids)} uploads",
                          inputs=Inputs(tuple(file_ids), md5s, placement, cached))


def create_body(job: JobRecord) -> dict[str, Any]:
    """The translated body with the staged input files and the placement of nested large files."""
    inputs = job.inputs or Inputs((), {}, "", {})
    body = dict(plan_of(job).body)
    analysis = dict(body["jobanalyses"][0])
    # Only `id`: the remote command unpacks the bundle and places the large files (placement_script).
    analysis["inputFiles"] = [{"id": fid} for fid in inputs.file_ids]
    if inputs.placement:
        analysis["command"] = f"{inputs.placement}\n{analysis['command']}"
    body["jobanalyses"] = [analysis, *body["jobanalyses"][1:]]
    return body


def find_remote(ctx: Context, job: JobRecord) -> str | None:
    """The remote job an earlier, interrupted create made for this entry (its name ends with the key).

    The text search comes first (one cheap call); if it finds nothing, the active-jobs listing is
    scanned too: a search index may lag behind a create, and a job we never submitted is always there.
    """
    key = attempt_key(job.reconcile_key, job.attempt)
    suffix = f"[{key}]"

    def named(listing: Any) -> list[dict[str, Any]]:
        return [item for item in listing if str(item.get("name", "")).endswith(suffix)]

    client = ctx.client
    found = named(client.iter_jobs(q=key)) or named(client.iter_jobs(state="not_completed"))
    if len(found) > 1:
        ctx.job_log(job).error("several remote jobs carry this key; adopting the oldest",
                               remote_jobs=[i["id"] for i in found])
    found.sort(key=lambda item: str(item.get("dateInserted", "")))
    return str(found[0]["id"]) if found else None


def guarded(ctx: Context, job: JobRecord, call: Callable[[], T]) -> T:
    """A create or submit, its outcome counted by protected mode (pipeline/protect.py)."""
    try:
        result = call()
    except (AuthenticationError, ValidationError, TransientError) as exc:
        if isinstance(exc, RateLimitedError):  # the budget's business, not a refusal
            raise
        if ctx.protection.failed(job.id, f"{type(exc).__name__}: {exc}", ctx.clock()):
            ctx.log.error("protected mode: Rescale refuses new jobs; they wait",
                          reason=ctx.protection.reason())
        raise
    if ctx.protection.succeeded():
        ctx.log.warning("protected mode ended: a create or submit went through")
    return result


def _reconciled(ctx: Context, job: JobRecord) -> JobRecord | None:
    """CREATING after an earlier attempt: the job CREATED if that attempt made a remote job."""
    remote_id = find_remote(ctx, job)
    if remote_id is None:
        return None
    ctx.job_log(job).info("remote job reconciled after an interrupted create", remote_job=remote_id)
    return ctx.transition(job, JobState.CREATED, "reconciled", remote_job_id=remote_id)


def _attempted_before(ctx: Context, job: JobRecord) -> bool:
    return any(t.to_state is JobState.CREATING for t in ctx.store.history(job.id))


def _hold_protected(ctx: Context, job: JobRecord) -> JobRecord:
    """Protected mode and nothing was created for this job: it waits, held, with the others."""
    return hold(ctx, job, ctx.protection.reason(), "protected mode: held after a refused create")


def create(ctx: Context, job: JobRecord) -> JobRecord:
    """STAGED/HELD -> CREATING -> CREATED; after an earlier attempt (CREATING, or HELD once it was
    refused in protected mode) reconcile first. In protected mode a job refused, or retried while the
    next probe is not due, is held (nothing exists on Rescale for it) instead of failing."""
    if job.state is JobState.CREATING:
        done = _reconciled(ctx, job)
        if done is not None:
            return done
        if not ctx.protection.may_create(ctx.clock()):
            return _hold_protected(ctx, job)
    else:
        again = job.state is JobState.HELD and _attempted_before(ctx, job)
        job = ctx.transition(job, JobState.CREATING, "creating", remote=job.remote)  # with its attempt
        done = _reconciled(ctx, job) if again else None
        if done is not None:
            return done
    try:
        remote = guarded(ctx, job, lambda: ctx.client.create_job(create_body(job)))
    except AuthenticationError:
        if ctx.protection.active:  # 401/403: Rescale created nothing
            return _hold_protected(ctx, job)
        raise
    except ValidationError as exc:
        return _refused(ctx, job, exc)
    failpoints.hit("create.before_persist")
    job = ctx.transition(job, JobState.CREATED, "created", remote_job_id=str(remote["id"]))
    ctx.job_log(job).info("remote job created")
    return job


def _vanished_cached_inputs(ctx: Context, job: JobRecord) -> dict[str, str]:
    """{file id: cache key} of the cached inputs Rescale no longer has (404, or isDeleted)."""
    gone: dict[str, str] = {}
    for file_id, key in (job.inputs.cached if job.inputs else {}).items():
        try:
            meta = ctx.client.get_file(str(file_id))
        except NotFoundError:
            meta = {"isDeleted": True}
        if isinstance(meta, dict) and meta.get("isDeleted") is True:
            gone[str(file_id)] = str(key)
    return gone


def _refused(ctx: Context, job: JobRecord, exc: ValidationError) -> JobRecord:
    """A create Rescale refused (400: nothing was created). If cached inputs vanished on Rescale
    (deleted there), drop them from the cache and stage the inputs again, once; else the job fails."""
    gone = _vanished_cached_inputs(ctx, job)
    for key in gone.values():
        ctx.store.forget_upload(key)
    retried = any(t.from_state is JobState.CREATING and t.to_state is JobState.STAGING_IN
                  for t in ctx.store.history(job.id))
    if gone and not retried:
        ctx.job_log(job).warning("cached inputs no longer exist on Rescale: uploading them again",
                                 files=sorted(gone))
        return ctx.transition(job, JobState.STAGING_IN, RESTAGE_REASON, inputs=None)
    if ctx.protection.active:  # refusing every job: this one waits with the others, it does not fail
        return _hold_protected(ctx, job)
    reason = f"Rescale refused the job: {exc}"
    if retried:
        reason += " (refused again after its vanished cached inputs were uploaded anew)"
    raise PermanentJobError(reason, stage="create") from exc


def _already_submitted(ctx: Context, job: JobRecord) -> bool:
    assert job.remote_job_id is not None  # narrowing: CREATED jobs always carry it
    return any(item.get("status") for item in ctx.client.job_statuses(job.remote_job_id))


def tag(ctx: Context, job: JobRecord) -> JobRecord:
    """CREATED -> TAGGED: the reconcile key as a tag on the remote job."""
    assert job.remote_job_id is not None  # narrowing: CREATED jobs always carry it
    ctx.client.add_tag(job.remote_job_id, attempt_key(job.reconcile_key, job.attempt))
    return ctx.transition(job, JobState.TAGGED, "tagged")


def assign_project(ctx: Context, job: JobRecord) -> JobRecord:
    """TAGGED -> PROJECT_SET when the job's account maps to a project; else straight on to submit."""
    assert job.remote_job_id is not None  # narrowing: TAGGED jobs always carry it
    project, organization = plan_of(job).project, ctx.config.agent.organization
    if not (project and organization):
        return submit(ctx, job)
    ctx.client.set_job_project(job.remote_job_id, project, organization=organization)
    return ctx.transition(job, JobState.PROJECT_SET, f"project {project}")


def submit(ctx: Context, job: JobRecord) -> JobRecord:
    """-> SUBMITTING -> SUBMITTED; in SUBMITTING (an attempt was made) /statuses/ decides first."""
    remote_id = job.remote_job_id
    assert remote_id is not None  # narrowing: created jobs always carry it
    if job.state is JobState.SUBMITTING and _already_submitted(ctx, job):
        ctx.job_log(job).info("remote job reconciled after an interrupted submit")
    else:
        if job.state is not JobState.SUBMITTING:
            job = ctx.transition(job, JobState.SUBMITTING, "submitting")
        try:
            guarded(ctx, job, lambda: ctx.client.submit_job(remote_id))
        except ValidationError:
            if not _already_submitted(ctx, job):
                raise
    job = ctx.transition(job, JobState.SUBMITTED, "submitted")
    ctx.job_log(job).info("remote job submitted")
    return job
