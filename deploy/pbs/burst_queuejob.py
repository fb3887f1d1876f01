# ruff: noqa: UP006, UP035, UP045
"""burst-agent queuejob/movejob/modifyjob hook (PBS server): jobs of queue `rescale` run on Rescale.

For a job entering queue `rescale` (qsub, or qmove into it) this hook
  1. refuses what cannot run on Rescale: interactive jobs (`qsub -I`), jobs without a script
     (`qsub -- prog`), and requests that do not translate (chunks of different shapes, zero
     ncpus, a time limit above the agent's maximum, no coretype that fits, ...);
  2. records the merged request (qsub has already merged #PBS lines and the command line into the
     job's attributes) as JSON in the schema of docs/translation.md "The request file", base64 in
     the job variable BURST_REQUEST_B64, which the execjob_launch hook hands to the relay;
  3. shrinks the PBS-side job to one relay on a proxy node (PROXY_SELECT), sets Rerunable=False
     and charges `rescale_cores=<cores>` (the site-wide cap on concurrent cloud cores).
It refuses moves out of `rescale`, and `qalter` of a rescale job's resources or variables.
Other queues are untouched. Install: docs/pbs.md. Written for the hook interpreter of OpenPBS /
PBS Pro (Python 3.6+): no dataclasses, typing-module annotations.
"""

import base64
import json
import math
import re
import sys
from typing import Any, Dict, List, Optional

# BEGIN SETTINGS
RESCALE_QUEUES = ("rescale",)            # queues whose jobs run on Rescale
# burst_agent for the translate check (None: no check); AGENT_CONFIG gives its translate.* limits.
SITE_PACKAGES = "/opt/burst-agent/venv/lib/python3.11/site-packages"
AGENT_CONFIG = "/etc/burst-agent/config.yaml"   # None: built-in defaults
CORETYPES_FILE = None                    # JSON of GET /api/v2/coretypes/; None: the embedded catalogue
PROXY_SELECT = "1:ncpus=1:mem=256mb:Qlist=rescale"  # what one relay takes on a proxy node
PROXY_PLACE = "pack"
CHARGE_RESOURCE = "rescale_cores"        # server consumable charged <cores> per job; None: no cap
REQUEST_VARIABLE = "BURST_REQUEST_B64"
# END SETTINGS

# The request keys in a fixed order (docs/translation.md "The request file"), as job_submit.lua writes them.
REQUEST_KEYS = (
    "nodes", "ntasks", "ntasks_per_node", "cpus_per_task", "mem_per_node_mb", "mem_per_cpu_mb",
    "mem_per_gpu_mb", "gpus_per_node", "gpus_per_task", "gpus", "time_limit_minutes", "exclusive",
    "job_name", "account", "partition", "constraint", "workdir", "stdout", "stderr",
)
# Resources that describe the remote shape: replaced by PROXY_SELECT, fixed after submission.
SHAPE_RESOURCES = ("select", "place", "ncpus", "mem", "ngpus", "nodes", "mpiprocs", "ompthreads", "nodect",
                   "vmem", "pmem")
CHUNK_KEYS = ("ncpus", "mpiprocs", "ompthreads", "ngpus", "mem")
# PBS size units (kb = 1024 bytes; w = an 8-byte word).
_SIZE_UNITS = {"": 1, "b": 1, "w": 8}
for _i, _p in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_p + "b"] = 1024 ** _i
    _SIZE_UNITS[_p + "w"] = 8 * 1024 ** _i
_SIZE = re.compile(r"([0-9]+)([kmgtp]?[bw]?)", re.IGNORECASE | re.ASCII)
_NOT_A_PROJECT = "_pbs_project_default"


class RequestError(ValueError):
    """The job's request cannot run on Rescale; the message goes to the user's terminal."""


def size_mb(text: str, what: str) -> int:
    """A PBS size ("16gb", "512mb", "1024" bytes) in MB, rounded up."""
    match = _SIZE.fullmatch(str(text).strip())
    if not match:
        raise RequestError(f"{what} must be a size like 16gb, got {text!r}")
    number, unit = match.groups()
    return math.ceil(int(number) * _SIZE_UNITS[unit.lower()] / 1024 ** 2)


def seconds(value: Any) -> int:
    """A PBS duration (pbs.duration is an int of seconds; text is [[HH:]MM:]SS[.ms])."""
    if isinstance(value, int):
        return int(value)
    parts = str(value).strip().split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError as exc:
        raise RequestError(f"walltime must be [[HH:]MM:]SS, got {value!r}") from exc
    if len(numbers) > 3 or any(n < 0 for n in numbers):
        raise RequestError(f"walltime must be [[HH:]MM:]SS, got {value!r}")
    total = 0.0
    for n in numbers:
        total = total * 60 + n
    return math.ceil(total)


def _count(text: str, what: str, minimum: int) -> int:
    if not text.isdigit() or int(text) < minimum:
        raise RequestError(f"{what} must be a whole number of at least {minimum}, got {text!r}")
    return int(text)


def parse_select(text: str) -> List[Dict[str, Any]]:
    """`2:ncpus=8:mem=16gb+1:ncpus=8:mem=16gb` -> chunk dicts (count plus the mapped resources)."""
    chunks = []
    for part in str(text).split("+"):
        fields = part.split(":")
        chunk = {"count": 1}  # type: Dict[str, Any]
        if fields and "=" not in fields[0]:
            chunk["count"] = _count(fields.pop(0), "select chunk count", 1)
        for field in fields:
            name, eq, value = field.partition("=")
            if not eq:
                raise RequestError(f"select chunk resource must be NAME=VALUE, got {field!r}")
            if name == "mem":
                chunk["mem"] = size_mb(value, "select mem")
            elif name in CHUNK_KEYS:
                chunk[name] = _count(value, "select " + name, 0)
        chunks.append(chunk)
    shapes = {tuple(sorted((k, v) for k, v in c.items() if k != "count")) for c in chunks}
    if len(shapes) > 1:
        raise RequestError(f"select chunks of different shapes cannot run on one Rescale coretype: {text}")
    return chunks


def _shape_from_select(select: str, place: str) -> Dict[str, Any]:
    chunks = parse_select(select)
    chunk = chunks[0]
    nodes = sum(c["count"] for c in chunks)
    ncpus = chunk.get("ncpus", 1)
    if ncpus < 1:
        raise RequestError(f"select {select}: ncpus=0 chunks cannot run on Rescale (ask for at least 1 cpu)")
    procs = chunk.get("mpiprocs") or 1
    per_node = {"mem": chunk.get("mem"), "gpus": chunk.get("ngpus") or None}
    placement = place.split(":")
    if "pack" in placement and nodes > 1:
        # All chunks on one host: one Rescale node with everything.
        procs *= nodes
        ncpus *= nodes
        per_node = {k: v * nodes if v else v for k, v in per_node.items()}
        nodes = 1
    return {
        "nodes": nodes, "ntasks": nodes * procs, "ntasks_per_node": procs,
        "cpus_per_task": max(1, math.ceil(ncpus / procs)), "mem_per_node_mb": per_node["mem"],
        "gpus_per_node": per_node["gpus"],
        "exclusive": True if {"excl", "exclhost"} & set(placement) else None,
    }


def _shape_from_nodes(spec: str) -> Dict[str, Any]:
    """Torque-style `nodes=N[:ppn=M]` (PBS Pro converts it to select, but not always before the hook)."""
    first, _, rest = str(spec).partition(":")
    nodes = _count(first, "nodes", 1) if first.isdigit() else 1
    ppn = 1
    for field in rest.split(":") if rest else []:
        name, _, value = field.partition("=")
        if name == "ppn":
            ppn = _count(value, "ppn", 1)
    return {"nodes": nodes, "ntasks": nodes * ppn, "ntasks_per_node": ppn, "cpus_per_task": 1}


def resource_shape(resources: Dict[str, Any]) -> Dict[str, Any]:
    """The remote shape from Resource_List: select (+place); else nodes; else job-wide ncpus/mem/ngpus."""
    text = {k: str(v) for k, v in resources.items() if v is not None and str(v) != ""}
    if "select" in text:
        # With select, job-wide ncpus/mem/ngpus are the server's sums of the chunks: not read.
        return _shape_from_select(text["select"], text.get("place", ""))
    if "nodes" in text:
        shape = _shape_from_nodes(text["nodes"])
    else:
        ncpus = _count(text.get("ncpus", "1"), "ncpus", 1)
        shape = {"nodes": 1, "ntasks": 1, "ntasks_per_node": 1, "cpus_per_task": ncpus}
    if "mem" in text:
        shape["mem_per_node_mb"] = math.ceil(size_mb(text["mem"], "mem") / shape["nodes"])
    if "ngpus" in text and _count(text["ngpus"], "ngpus", 0):
        shape["gpus"] = _count(text["ngpus"], "ngpus", 0)
    return shape


def _path(value: Any) -> Optional[str]:
    """`host:/dir/file` -> `/dir/file`; a bare directory (PBS then picks the name) -> None."""
    if value is None or str(value) == "":
        return None
    path = re.sub(r"^[A-Za-z0-9_.-]+:(?=/)", "", str(value), count=1)
    return None if path.endswith("/") else path


def _text(value: Any) -> Optional[str]:
    return None if value is None or str(value) == "" else str(value)


def build_request(job: Dict[str, Any]) -> Dict[str, Any]:
    """The request-file JSON object for a job (plain dict of its attributes; see job_info())."""
    request = dict.fromkeys(REQUEST_KEYS)  # type: Dict[str, Any]
    request.update(resource_shape(job.get("Resource_List") or {}))
    walltime = (job.get("Resource_List") or {}).get("walltime")
    if walltime is not None and str(walltime) != "":
        request["time_limit_minutes"] = max(1, math.ceil(seconds(walltime) / 60))
    project = _text(job.get("project"))
    request.update({
        "job_name": _text(job.get("Job_Name")),
        "account": _text(job.get("Account_Name")) or (project if project != _NOT_A_PROJECT else None),
        "partition": _text(job.get("queue")),
        "workdir": _text((job.get("Variable_List") or {}).get("PBS_O_WORKDIR")),
        "stdout": _path(job.get("Output_Path")),
        "stderr": _path(job.get("Error_Path")),
    })
    return request


def estimated_cores(request: Dict[str, Any]) -> int:
    """Cores the remote job uses: tasks x cpus per task (the coretype may round it up)."""
    tasks = request.get("ntasks") or (request.get("nodes") or 1) * (request.get("ntasks_per_node") or 1)
    return int(tasks) * int(request.get("cpus_per_task") or 1)


def encode_request(request: Dict[str, Any]) -> str:
    text = json.dumps({k: request.get(k) for k in REQUEST_KEYS}) + "\n"
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def refusal(job: Dict[str, Any]) -> Optional[str]:
    """Why a batch system job cannot go to Rescale at all (before its resources are read), or None."""
    queue = job.get("queue")
    if int(job.get("interactive") or 0):
        return f"queue {queue} takes batch jobs only: qsub -I cannot run on Rescale"
    if _text(job.get("executable")):
        return f"queue {queue} needs a job script: `qsub -- program` cannot run on Rescale"
    return None


def check_translation(request: Dict[str, Any]) -> Optional[str]:
    """Translate the request the way the agent will; the reason it fails, or None (also when unchecked)."""
    try:
        from burst_agent.request import TranslateError
        from burst_agent.translate import load_catalogue, parse_script, translate
    except ImportError:
        return None
    catalogue = load_catalogue(_catalogue_data())
    cfg = _translate_config()
    try:
        parsed = parse_script("#!/bin/bash\n", scheduler="pbs", request_overrides=request)
        translate(parsed, catalogue, cfg)
    except TranslateError as exc:
        return exc.message
    return None


def _catalogue_data() -> Any:
    if CORETYPES_FILE:
        with open(CORETYPES_FILE, encoding="utf-8") as f:
            return json.load(f)
    from importlib import resources

    return json.loads(resources.files("burst_agent").joinpath("data/coretypes.json").read_text("utf-8"))


def _translate_config() -> Any:
    from pathlib import Path

    from burst_agent.config import load_config

    return load_config(Path(AGENT_CONFIG) if AGENT_CONFIG else None, environ={}).translate


def burst_agent_available() -> bool:
    """burst_agent importable (SITE_PACKAGES is added to sys.path once)."""
    if SITE_PACKAGES and SITE_PACKAGES not in sys.path:
        sys.path.append(SITE_PACKAGES)
    try:
        import burst_agent.translate  # noqa: F401
    except Exception:  # any failure (old interpreter, missing deps) only skips the check
        return False
    return True


# ---------------------------------------------------------------------------------------------
# the PBS-facing shell


def queue_name(queue: Any, default: Any = None) -> str:
    """A pbs.queue (or None: the server's default queue) -> its name, without @server."""
    if queue is None:
        queue = default
    name = getattr(queue, "name", queue)
    return "" if name is None else str(name).partition("@")[0]


def job_info(job: Any, queue: str) -> Dict[str, Any]:
    """The plain attributes build_request() reads, from a pbs job object."""
    resources = job.Resource_List
    names = (*SHAPE_RESOURCES, "walltime")
    variables = job.Variable_List
    return {
        "queue": queue,
        "Resource_List": {n: resources[n] for n in names if resources is not None
                          and resources[n] is not None},
        "Variable_List": {"PBS_O_WORKDIR": variables.get("PBS_O_WORKDIR")} if variables is not None else {},
        **{a: getattr(job, a, None) for a in ("Job_Name", "Account_Name", "project", "Output_Path",
                                             "Error_Path", "interactive", "executable")},
    }


def _server_default_queue(pbs: Any) -> Any:
    try:
        return pbs.server().default_queue
    except Exception:  # no server object in this context: treat as no default
        return None


def _reject(pbs: Any, event: Any, message: str) -> None:
    pbs.logmsg(pbs.LOG_DEBUG, "burst-agent: rejected: " + message)
    event.reject("burst-agent: " + message)


def _checked(pbs: Any, request: Dict[str, Any]) -> Optional[str]:
    """check_translation(), or None with a server-log warning when the check cannot run here."""
    if not burst_agent_available():
        pbs.logmsg(pbs.LOG_WARNING, f"burst-agent: burst_agent is not importable from {SITE_PACKAGES}: "
                   "job accepted without the translate check")
        return None
    try:
        return check_translation(request)
    except Exception as exc:  # a bad agent config or catalogue must not block qsub: the agent reports it
        pbs.logmsg(pbs.LOG_WARNING, f"burst-agent: translate check skipped: {type(exc).__name__}: {exc}")
        return None


def enter_rescale(pbs: Any, event: Any, job: Any, queue: str) -> None:
    """Validate, record the request, shrink to a relay (queuejob, or movejob into a rescale queue)."""
    info = job_info(job, queue)
    why = refusal(info)
    if why:
        _reject(pbs, event, why)
    try:
        request = build_request(info)
    except RequestError as exc:
        _reject(pbs, event, str(exc))
    why = _checked(pbs, request)
    if why:
        _reject(pbs, event, why)
    job.Variable_List[REQUEST_VARIABLE] = encode_request(request)
    job.Rerunable = False
    for name in SHAPE_RESOURCES:
        if job.Resource_List[name] is not None:
            job.Resource_List[name] = None
    job.Resource_List["select"] = pbs.select(PROXY_SELECT)
    job.Resource_List["place"] = pbs.place(PROXY_PLACE)
    if CHARGE_RESOURCE:
        job.Resource_List[CHARGE_RESOURCE] = estimated_cores(request)
    pbs.logmsg(pbs.LOG_DEBUG, "burst-agent: request " + json.dumps(request))


def modify_refusal(queue: str, job: Any) -> Optional[str]:
    """qalter of a rescale job: resources and variables are fixed at submission; walltime may change."""
    if queue not in RESCALE_QUEUES:
        return None
    fixed = SHAPE_RESOURCES + ((CHARGE_RESOURCE,) if CHARGE_RESOURCE else ())
    resources = job.Resource_List
    changed = [n for n in fixed if resources is not None and resources[n] is not None]
    if changed:
        return "the resources of a Rescale job are fixed at submission ({})".format(", ".join(changed))
    if job.Variable_List is not None:
        return "the variables of a Rescale job are fixed at submission"
    return None


def main() -> None:
    import pbs  # only inside PBS (tests use a stand-in)

    event = pbs.event()
    job = event.job
    if event.type == pbs.MODIFYJOB:
        why = modify_refusal(queue_name(event.job_o.queue), job)
        if why:
            _reject(pbs, event, why)
        event.accept()
    target = queue_name(job.queue, _server_default_queue(pbs))
    if event.type == pbs.MOVEJOB:
        source = queue_name(event.src_queue)
        if source in RESCALE_QUEUES and target not in RESCALE_QUEUES:
            _reject(pbs, event, f"jobs cannot move out of queue {source}: delete and resubmit")
        if source in RESCALE_QUEUES:
            event.accept()
    if target in RESCALE_QUEUES:
        enter_rescale(pbs, event, job, target)
    event.accept()


# PBS runs a hook with __name__ "builtins" (Python 3) or "__builtin__" (2): importing it does not run it.
if __name__ in ("builtins", "__builtin__"):
    main()
