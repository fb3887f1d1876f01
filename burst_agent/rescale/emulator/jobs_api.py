"""Views for /api/v2/jobs/ and friends: create, list, get, submit, stop, statuses, files, runs, tail."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from burst_agent.rescale.emulator.context import Context
from burst_agent.rescale.emulator.files import download_response
from burst_agent.rescale.emulator.files_api import change_tags
from burst_agent.rescale.emulator.http import ApiError, empty_response, json_body, json_response, paginate
from burst_agent.rescale.emulator.store import OWNER, PROJECTS, Job, normalize_tag
from burst_agent.rescale.emulator.validate import validate_job_body

JOB_STATUS_FILTER = {
    "PENDING": "Pending",
    "QUEUED": "Queued",
    "STARTED": "Started",
    "VALIDATED": "Validated",
    "EXECUTING": "Executing",
    "COMPLETED": "Completed",
    "STOPPING": "Stopping",
    "WAITING_FOR_CLUSTER": "Waiting for Cluster",
    "FORCE_STOP": "Force Stop",
    "WAITING_FOR_QUEUE": "Waiting for Queue",
}
RUNNING_STATUSES = ("Executing", "Stopping")


def _display(content: str) -> dict[str, Any]:
    return {"content": content, "labelClass": "", "useLabel": False}


def _job_analysis_api(ctx: Context, request: Request, item: dict[str, Any]) -> dict[str, Any]:
    code, version = item["analysis"]["code"], item["analysis"].get("version")
    analysis = ctx.catalogue.analyses[code]
    found = ctx.catalogue.find_version(code, version) or {}
    hardware = item["hardware"]
    coretype = ctx.catalogue.coretypes[hardware["coreType"]]
    files = [
        ctx.store.files[ref["id"]].to_api(ctx.base_url(request))
        for ref in item.get("inputFiles") or []
        if ref["id"] in ctx.store.files
    ]
    return {
        "analysis": {
            "code": code,
            "name": analysis["name"],
            "version": found.get("versionCode", version),
            "versionName": found.get("version", ""),
        },
        "command": item["command"],
        "envVars": item.get("envVars") or {},
        "flags": {},
        "hardware": {
            "coreSummary": {
                "memoryPerNode": coretype.get("memory", 0) * hardware["coresPerSlot"],
                "numberOfNodes": float(hardware.get("slots", 1)),
                "storagePerNode": coretype.get("storage", 0) * hardware["coresPerSlot"],
            },
            "coreType": hardware["coreType"],
            "coresPerSlot": hardware["coresPerSlot"],
            "slots": hardware.get("slots", 1),
            "walltime": hardware.get("walltime"),
        },
        "inputFiles": files,
        "postProcessScript": None,
        "postProcessScriptCommand": "",
        "preProcessScript": None,
        "preProcessScriptCommand": "",
        "templateTasks": [],
        "useMpi": bool(item.get("useMpi", False)),
        "useRescaleLicense": bool(item.get("useRescaleLicense", False)),
    }


def job_api(ctx: Context, request: Request, job: Job) -> dict[str, Any]:
    """The job object of the doc's "Get a Specific Job": it carries no status."""
    with ctx.store.lock:
        return {
            "archiveFilters": [],
            "billingPriorityValue": job.billing_priority,
            "caseFile": None,
            "expectedRuns": None,
            "id": job.id,
            "includeNominalRun": False,
            "isLowPriority": job.is_low_priority,
            "isTemplateDryRun": False,
            "jobanalyses": [_job_analysis_api(ctx, request, a) for a in job.analyses],
            "jobvariables": [],
            "customFields": {},
            "userTags": list(job.tags),
            "monteCarloIterations": None,
            "name": job.name,
            "optimizer": None,
            "owner": OWNER,
            "paramFile": None,
            "projectId": job.project_id,
            "remoteVizConfig": None,
            "resourceFilters": [],
        }


def job_list_item(ctx: Context, job: Job) -> dict[str, Any]:
    return {
        "analysisNames": [ctx.catalogue.analyses[a["analysis"]["code"]]["name"] for a in job.analyses],
        "clusterStatusDisplay": _display(job.cluster_status),
        "dateInserted": job.created,
        "id": job.id,
        "isVisible": True,
        "jobStatus": _display(job.status),
        "name": job.name,
        "owner": OWNER,
        "sharedWith": [],
        "storage": ctx.store.job_storage_bytes(job),
    }


def create_job(ctx: Context, request: Request) -> Response:
    body = json_body(request)
    errors = validate_job_body(
        body,
        ctx.catalogue,
        lambda i: ctx.store.live_file(i) is not None,
        lambda p: any(p == pr["id"] for pr in PROJECTS),
    )
    if errors:
        raise ApiError(400, errors)
    analyses = [
        {**a, "hardware": {**a["hardware"], "slots": a["hardware"].get("slots", 1)}}
        for a in body["jobanalyses"]
    ]
    input_ids = [ref["id"] for a in analyses for ref in a.get("inputFiles") or []]
    # `tags` in the body are ignored, as on Rescale: POST them to /jobs/{id}/tags/.
    job = Job(
        id=ctx.store.new_id(5),
        name=body["name"],
        analyses=analyses,
        input_file_ids=input_ids,
        is_low_priority=bool(body.get("isLowPriority", False)),
        billing_priority=body.get("billingPriorityValue"),
        project_id=body.get("projectId"),
    )
    ctx.store.add_job(job)
    return json_response(job_api(ctx, request, job), 201)


def _term_matcher(ctx: Context, term: str) -> Callable[[Job], bool]:
    lower = term.lower()
    if lower.startswith("#"):
        return lambda job: any(t["normalizedName"] == normalize_tag(term[1:]) for t in job.tags)
    if lower.startswith("project:"):
        return lambda job: (job.project_id or "") == term.split(":", 1)[1]
    if lower.startswith("software:"):
        want = lower.split(":", 1)[1]
        return lambda job: any(
            want in (a["analysis"]["code"], ctx.catalogue.analyses[a["analysis"]["code"]]["name"].lower())
            for a in job.analyses
        )
    return lambda job: (
        lower in job.name.lower()
        or any(lower in ctx.catalogue.analyses[a["analysis"]["code"]]["name"].lower() for a in job.analyses)
    )


def query_matcher(ctx: Context, q: str) -> Callable[[Job], bool]:
    """`q`: terms ANDed, `or` between groups, `not` negating the next term (no parentheses)."""
    try:
        tokens = shlex.split(q)
    except ValueError as exc:
        raise ApiError(400, {"q": [f"Cannot parse the search: {exc}"]}) from exc
    groups: list[list[tuple[bool, Callable[[Job], bool]]]] = [[]]
    negate = False
    for token in tokens:
        word = token.lower()
        if word == "or":
            groups.append([])
        elif word == "not":
            negate = True
        elif word != "and":
            groups[-1].append((negate, _term_matcher(ctx, token)))
            negate = False
    return lambda job: any(all(m(job) != neg for neg, m in group) for group in groups if group) or not tokens


def list_jobs(ctx: Context, request: Request) -> Response:
    state = request.args.get("state")
    status_filter = request.args.get("job_status")
    if state not in (None, "completed", "not_completed"):
        raise ApiError(400, {"state": ["Must be one of: completed, not_completed."]})
    if status_filter is not None and status_filter.upper() not in JOB_STATUS_FILTER:
        raise ApiError(400, {"job_status": [f"Must be one of: {', '.join(JOB_STATUS_FILTER)}."]})
    matches = query_matcher(ctx, request.args.get("q", ""))
    with ctx.store.lock:
        items = [
            job_list_item(ctx, job)
            for job in ctx.store.jobs_newest_first()
            if (state is None or job.completed == (state == "completed"))
            and (status_filter is None or job.status == JOB_STATUS_FILTER[status_filter.upper()])
            and matches(job)
        ]
    return paginate(request, items)


def job_detail(ctx: Context, request: Request, job_id: str) -> Response:
    job = ctx.job(job_id)
    if request.method == "PATCH":
        body = json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        name = body.get("name")
        if "name" in body and (not isinstance(name, str) or not name.strip()):
            raise ApiError(400, {"name": ["This field may not be blank."]})
        with ctx.store.lock:
            job.name = name or job.name
        return json_response({"id": job.id, "isLowPriority": job.is_low_priority, "name": job.name})
    if request.method == "DELETE":
        _delete_jobs(ctx, [job], _delete_inputs_flag(json_body(request)))
        return empty_response(204)
    return json_response(job_api(ctx, request, job))


def _delete_inputs_flag(body: Any) -> bool:
    flag = body.get("deleteInputFiles", False) if isinstance(body, dict) else False
    if not isinstance(flag, bool):
        raise ApiError(400, {"deleteInputFiles": ["Must be a valid boolean."]})
    return flag


def _delete_jobs(ctx: Context, jobs: list[Job], delete_inputs: bool) -> None:
    """The doc's "Delete a Job": not while it runs (all or nothing); optionally its input files too."""
    with ctx.store.lock:
        running = [job.id for job in jobs if job.submitted and not job.completed]
        if running:
            raise ApiError(400, f"Jobs that are currently running cannot be deleted; stop the job first: "
                                f"{', '.join(running)}.")
        for job in jobs:
            del ctx.store.jobs[job.id]
            for file_id in job.input_file_ids if delete_inputs else ():
                if file_id in ctx.store.files:
                    ctx.store.files[file_id].deleted = True


def delete_jobs(ctx: Context, request: Request) -> Response:
    """DELETE /jobs/ {"jobIds": [...], "deleteInputFiles": bool}: the doc's "Delete Multiple Jobs"."""
    body = json_body(request)
    ids = body.get("jobIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, {"jobIds": ["A non-empty list of job ids is required."]})
    _delete_jobs(ctx, [ctx.job(i) for i in dict.fromkeys(ids)], _delete_inputs_flag(body))
    return empty_response(204)


def submit_job(ctx: Context, request: Request, job_id: str) -> Response:
    job = ctx.job(job_id)
    with ctx.store.lock:
        if job.submitted:
            raise ApiError(400, "This job has already been submitted.")
        ctx.runner.submit(job)
    return empty_response(200)


def stop_job(ctx: Context, request: Request, job_id: str, mode: str) -> Response:
    job = ctx.job(job_id)
    if not job.submitted:
        raise ApiError(400, "This job has not been submitted.")
    ctx.runner.request_stop(job, mode)
    return empty_response(202)


def statuses(ctx: Context, request: Request, job_id: str) -> Response:
    job = ctx.job(job_id)
    with ctx.store.lock:
        items = [s.to_api() for s in reversed(job.statuses)]
    return paginate(request, items)


def cluster_statuses(ctx: Context, request: Request, job_id: str) -> Response:
    job = ctx.job(job_id)
    with ctx.store.lock:
        items = [s.to_api() for s in reversed(job.cluster_statuses)]
    if not items:
        raise ApiError(404, "Not found.")  # the cluster does not exist yet
    return paginate(request, items)


def job_tags(ctx: Context, request: Request, job_id: str) -> Response:
    return change_tags(ctx, request, ctx.job(job_id).tags)


def output_files(ctx: Context, request: Request, job_id: str, run_id: str = "1") -> Response:
    job = ctx.job(job_id)
    if run_id != "1":
        raise ApiError(404, "Not found.")
    search = request.args.get("search", "")
    with ctx.store.lock:
        records = [ctx.store.files[i] for i in job.output_file_ids if i in ctx.store.files]
        items = [
            r.to_api(ctx.base_url(request)) for r in records if not r.deleted and search in r.relative_path
        ]
    return paginate(request, items)


def _run_api(ctx: Context, job: Job) -> dict[str, Any]:
    with ctx.store.lock:
        outputs = [ctx.store.files[i] for i in job.output_file_ids if i in ctx.store.files]
        return {
            "dateCompleted": job.run_completed,
            "dateStarted": job.run_started,
            "displayOrder": 1,
            "id": "1",
            "isOptimal": False,
            "outputFileCount": len(outputs),
            "outputFileSize": sum(f.size for f in outputs) if job.run_completed else None,
            "parent": None,
            "type": 3,
            "variables": [],
        }


def runs(ctx: Context, request: Request, job_id: str) -> Response:
    job = ctx.job(job_id)
    return paginate(request, [_run_api(ctx, job)] if job.run_started else [])


def run_detail(ctx: Context, request: Request, job_id: str, run_id: str) -> Response:
    job = ctx.job(job_id)
    if run_id != "1" or not job.run_started:
        raise ApiError(404, "Not found.")
    return json_response(_run_api(ctx, job))


def _live_work_dir(ctx: Context, job: Job, run_id: str) -> Path:
    with ctx.store.lock:
        running = job.status in RUNNING_STATUSES and job.work_dir is not None
    if run_id != "1" or not running or job.work_dir is None:
        raise ApiError(404, "The run is not in progress; list and download its output files instead.")
    return job.work_dir


def directory_contents(ctx: Context, request: Request, job_id: str, run_id: str) -> Response:
    work = _live_work_dir(ctx, ctx.job(job_id), run_id)
    paths = sorted(
        p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file() and not p.is_symlink()
    )
    return json_response(
        [{"path": p, "resource": f"/api/v2/jobs/{job_id}/runs/{run_id}/tail/{p}/"} for p in paths]
    )


def tail(ctx: Context, request: Request, job_id: str, run_id: str, file_path: str) -> Response:
    """The last `lines` lines as JSON, or the raw file without `lines`; only while the run is live."""
    work = _live_work_dir(ctx, ctx.job(job_id), run_id).resolve()
    target = (work / file_path).resolve()
    if work not in target.parents or not target.is_file():
        raise ApiError(404, "Not found.")
    lines = request.args.get("lines")
    if lines is None:
        return download_response(request, target, target.name, "")
    if not lines.isdigit():
        raise ApiError(400, {"lines": ["A valid integer is required."]})
    text = target.read_bytes()[-4 * 1024 * 1024 :].decode("utf-8", errors="replace")
    selected = text.splitlines()[-int(lines) :] if int(lines) else []
    return json_response({"fileType": f"{target}: ASCII text", "lines": selected})


def projects(ctx: Context, request: Request) -> Response:
    return paginate(request, list(PROJECTS))


def project_assignment(ctx: Context, request: Request, org: str, job_id: str) -> Response:
    job = ctx.job(job_id)
    if request.method == "POST":
        body = json_body(request)
        project_id = body.get("projectId") if isinstance(body, dict) else None
        if not any(project_id == p["id"] for p in PROJECTS):
            raise ApiError(400, {"projectId": [f"Unknown project {project_id!r}."]})
        with ctx.store.lock:
            job.project_id = project_id
    return json_response({"projectId": job.project_id})
