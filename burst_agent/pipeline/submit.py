"""Stage-in, then create, tag, assign and submit the remote job exactly once (crash-safe)."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from burst_agent import failpoints
from burst_agent.command_wrapper import SCRIPT_NAME
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.progress import TransferProgress
from burst_agent.relay import INPUT_BUNDLE, INPUT_MANIFEST
from burst_agent.rescale.errors import ValidationError
from burst_agent.staging.bundle import placement_script, stage_in
from burst_agent.staging.inputs import BUNDLE_NAME, InputFile, InputPlan, InputSelectionError
from burst_agent.staging.jobplan import job_plan
from burst_agent.staging.safepath import safe_relpath
from burst_agent.store import JobRecord


class PermanentJobError(Exception):
    """The job cannot go on (bad inputs, a body Rescale refuses): it fails with this reason.

    `stage` is the failure class metrics count it under (stage_in, create, ...).
    """

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


def _plan(ctx: Context, job: JobRecord, script_file: Path) -> InputPlan:
    exclude = [Path(p) for p in (job.stdout_path, job.stderr_path) if p]
    workdir = Path(job.workdir) if job.workdir else None
    try:
        return job_plan(workdir, job.job_spec["script"], script_file, ctx.config.staging, exclude)
    except (InputSelectionError, OSError) as exc:
        raise PermanentJobError(f"inputs: {exc}", stage="stage_in") from exc


_LARGE_NAME = re.compile(r"input-large-[0-9]{1,6}")


def _entry_file(entry_dir: Path, name: str, owner_uid: int) -> Path:
    """A file the relay put in the entry: a plain name, a regular file (no symlink), the owner's own.

    The manifest is user-written: without these checks `../../state/token` or a symlink named like
    the bundle would make the agent upload its own secrets. The entry sits in claimed/ (0700), so the
    user can no longer change it between this check and the upload.
    """
    st = os.lstat(entry_dir / name)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != owner_uid:
        reason = f"inputs: {name!r} is not a regular file of the job's owner"
        raise PermanentJobError(reason, stage="stage_in")
    return entry_dir / name


def _prepared_inputs(
    ctx: Context, job: JobRecord, upload: Any, cache_get: Any
) -> tuple[list[str], dict[str, str], str]:
    """The relay's prepared inputs: its bundle (uploaded as is) and large files (cached by content)."""
    entry_dir = ctx.spool.claimed / job.entry
    try:
        manifest = json.loads(_entry_file(entry_dir, INPUT_MANIFEST, job.owner_uid).read_text())
        large = []
        for item in manifest.get("large", []):
            if not _LARGE_NAME.fullmatch(str(item["file"])):
                raise ValueError(f"unexpected input file name {item['file']!r}")
            source = _entry_file(entry_dir, item["file"], job.owner_uid)
            large.append(InputFile(safe_relpath(str(item["rel"])), source, source.stat().st_size))
        bundle = _entry_file(entry_dir, INPUT_BUNDLE, job.owner_uid)
        md5s = {str(k): str(v) for k, v in dict(manifest.get("bundle_md5s", {})).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = f"inputs: the relay's input manifest is unusable: {exc}"
        raise PermanentJobError(reason, stage="stage_in") from exc
    plan = InputPlan(workdir=entry_dir, bundle_members=[], large_files=large)
    result = stage_in(plan, upload=upload, cache_get=cache_get, cache_put=ctx.store.remember_upload,
                      tmpdir=ctx.spool.tmp)
    bundle_id = upload(bundle, BUNDLE_NAME)
    return [bundle_id, *result.file_ids], {**md5s, **result.input_md5}, placement_script(plan)


def stage_inputs(ctx: Context, job: JobRecord) -> JobRecord:
    """Upload the script and the selected inputs; the file ids are persisted before create uses them."""
    if job.state is JobState.TRANSLATED:
        job = ctx.store.transition(job.id, JobState.STAGING_IN, "uploading inputs")
    log = ctx.job_log(job)
    store = ctx.store

    def cache_get(key: str) -> str | None:
        hit = store.cached_upload(key)
        return hit.remote_file_id if hit else None

    tracker = TransferProgress(store, job.id)

    def upload(path: Path, name: str) -> str:
        report = tracker.for_file(name)

        def progress(done: int, total: int | None) -> None:
            report(done, total)
            if done and total and done < total:
                failpoints.hit("upload.midway")

        started = time.monotonic()
        file_id = str(ctx.client.upload_file(path, name=name, progress=progress)["id"])
        ctx.metrics.transferred("upload", path.stat().st_size, time.monotonic() - started)
        return file_id

    if job.job_spec.get("delivery") == "relay":
        file_ids, md5s, placement = _prepared_inputs(ctx, job, upload, cache_get)
    else:
        with tempfile.TemporaryDirectory(prefix="burst-stage-", dir=ctx.spool.tmp) as tmp:
            script_file = Path(tmp) / SCRIPT_NAME
            script_file.write_text(job.job_spec["script"], encoding="utf-8")
            plan = _plan(ctx, job, script_file)
            for warning in plan.warnings:
                log.warning("input skipped", detail=warning)
            result = stage_in(plan, upload=upload, cache_get=cache_get, cache_put=store.remember_upload,
                              tmpdir=Path(tmp))
        file_ids, md5s, placement = result.file_ids, result.input_md5, placement_script(plan)
    # The bundle (script + small files) always comes first and is an archive Rescale extracts.
    inputs = [{"id": fid, "decompress": index == 0} for index, fid in enumerate(file_ids)]
    spec = {**job.job_spec, "input_files": inputs, "input_md5": md5s, "placement": placement}
    log.info("inputs staged", uploads=len(file_ids))
    return store.update(job.id, job_spec=spec, input_file_ids=tuple(file_ids), transfer_done=0,
                        transfer_total=0)


def create_body(job: JobRecord) -> dict[str, Any]:
    """The translated body with the staged input files and the placement of nested large files."""
    spec = job.job_spec
    body = dict(spec["body"])
    analysis = dict(body["jobanalyses"][0])
    analysis["inputFiles"] = spec.get("input_files", [])
    if spec.get("placement"):
        analysis["command"] = f"{spec['placement']}\n{analysis['command']}"
    body["jobanalyses"] = [analysis, *body["jobanalyses"][1:]]
    return body


def find_remote(ctx: Context, job: JobRecord) -> str | None:
    """The remote job an earlier, interrupted create made for this entry (its name ends with the key).

    The text search comes first (one cheap call); if it finds nothing, the active-jobs listing is
    scanned too: a search index may lag behind a create, and a job we never submitted is always there.
    """
    suffix = f"[{job.reconcile_key}]"

    def named(listing: Any) -> list[dict[str, Any]]:
        return [item for item in listing if str(item.get("name", "")).endswith(suffix)]

    client = ctx.client
    found = named(client.iter_jobs(q=job.reconcile_key)) or named(client.iter_jobs(state="not_completed"))
    if len(found) > 1:
        ctx.job_log(job).error("several remote jobs carry this key; adopting the oldest",
                               remote_jobs=[i["id"] for i in found])
    found.sort(key=lambda item: str(item.get("dateInserted", "")))
    return str(found[0]["id"]) if found else None


def create(ctx: Context, job: JobRecord) -> JobRecord:
    """STAGING_IN -> CREATED: reconcile first if a create was already attempted, never create twice."""
    log = ctx.job_log(job)
    if job.create_attempted_at is not None:
        remote_id = find_remote(ctx, job)
        if remote_id is not None:
            log.info("remote job reconciled after an interrupted create", remote_job=remote_id)
            return ctx.store.transition(job.id, JobState.CREATED, "reconciled", remote_job_id=remote_id)
    body = create_body(job)
    job = ctx.store.update(job.id, create_attempted_at=ctx.clock())
    try:
        remote = ctx.client.create_job(body)
    except ValidationError as exc:
        raise PermanentJobError(f"Rescale refused the job: {exc}", stage="create") from exc
    failpoints.hit("create.before_persist")
    job = ctx.store.transition(job.id, JobState.CREATED, "created", remote_job_id=str(remote["id"]))
    ctx.job_log(job).info("remote job created")
    return job


def _already_submitted(ctx: Context, job: JobRecord) -> bool:
    assert job.remote_job_id is not None  # narrowing: CREATED jobs always carry it
    return any(item.get("status") for item in ctx.client.job_statuses(job.remote_job_id))


def tag_assign_submit(ctx: Context, job: JobRecord) -> JobRecord:
    """CREATED -> SUBMITTED, resuming at the first step an interrupted run did not finish."""
    remote_id = job.remote_job_id
    assert remote_id is not None  # narrowing: CREATED jobs always carry it
    if not job.tags_done:
        ctx.client.add_tag(remote_id, job.reconcile_key)
        job = ctx.store.update(job.id, tags_done=True)
    organization = ctx.config.agent.organization
    if job.project and organization and not job.project_done:
        ctx.client.set_job_project(remote_id, job.project, organization=organization)
        job = ctx.store.update(job.id, project_done=True)
    if job.submit_attempted_at is not None and _already_submitted(ctx, job):
        ctx.job_log(job).info("remote job reconciled after an interrupted submit")
    else:
        job = ctx.store.update(job.id, submit_attempted_at=ctx.clock())
        try:
            ctx.client.submit_job(remote_id)
        except ValidationError:
            if not _already_submitted(ctx, job):
                raise
    job = ctx.store.transition(job.id, JobState.SUBMITTED, "submitted")
    ctx.metrics.job_submitted()
    ctx.job_log(job).info("remote job submitted")
    return job
