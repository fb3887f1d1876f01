# ruff: noqa: UP006, UP035, UP045
"""burst-agent execjob_launch/execjob_end hook (PBS MoM of a proxy node): rescale jobs run the relay.

execjob_launch runs as root just before the MoM execs the job's shell. For a job of queue `rescale`
it writes the job's script (`$PBS_HOME/mom_priv/jobs/<jobid>.SC`) and the request the queuejob hook
recorded (job variable BURST_REQUEST_B64) into RUN_DIR/<jobid>/ (0700, files 0600, owned by the
job's user), and swaps the program: the MoM then execs, as the user,
    BURST_AGENT relay --script RUN_DIR/<jobid>/script --request RUN_DIR/<jobid>/request.json [--spool DIR]
instead of the shell. execjob_end removes RUN_DIR/<jobid>/. Other queues are untouched.
Install: docs/pbs.md. Written for the hook interpreter of OpenPBS / PBS Pro (Python 3.6+).
"""

import base64
import binascii
import json
import os
import re
import shutil
from typing import Any, Dict, NamedTuple, Optional, Tuple

# BEGIN SETTINGS
BURST_AGENT = "/opt/burst-agent/venv/bin/burst-agent"  # the relay executable on the proxy node
SPOOL_DIR = None                         # passed as --spool DIR when set
RESCALE_QUEUES = ("rescale",)
RUN_DIR = "/var/spool/burst-agent/pbs"   # root-owned 0711; one 0700 directory per job inside
CHARGE_RESOURCE = "rescale_cores"        # as in burst_queuejob.py; None: no check at launch
REQUEST_VARIABLE = "BURST_REQUEST_B64"
# END SETTINGS

SCRIPT_SUFFIX = ".SC"  # the MoM's copy of the job script: mom_priv/jobs/<jobid>.SC (OpenPBS start_exec.c)


class LaunchError(ValueError):
    """The relay cannot be started for this job; the MoM deletes the job with this reason."""


class LaunchPlan(NamedTuple):
    """Everything the launch needs, decided without touching the file system."""

    job_dir: str
    script_source: str
    script_path: str
    request_path: str
    request_text: str
    progname: str
    argv: Tuple[str, ...]
    warning: Optional[str]


def job_dir_name(job_id: str) -> str:
    """A file name for a job id: `123[4].server` -> `123_4_.server` (no `/`, no `..`)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", job_id)
    return "_" + name if name.startswith(".") or not name else name


def estimated_cores(request: Dict[str, Any]) -> int:
    """Tasks x cpus per task: the cores the queuejob hook charged (same formula)."""
    tasks = request.get("ntasks") or (request.get("nodes") or 1) * (request.get("ntasks_per_node") or 1)
    return int(tasks) * int(request.get("cpus_per_task") or 1)


def decode_request(encoded: Optional[str]) -> Tuple[Dict[str, Any], Optional[str]]:
    """The request object from BURST_REQUEST_B64, and a warning when there is none."""
    if not encoded:
        return {}, (f"{REQUEST_VARIABLE} is not set (was burst_queuejob enabled when the job was "
                    "queued?): the relay uses the script's #PBS lines only")
    try:
        request = json.loads(base64.b64decode(encoded, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise LaunchError(f"{REQUEST_VARIABLE} is not base64 JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise LaunchError(f"{REQUEST_VARIABLE} is not a JSON object")
    return request, None


def plan_launch(job: Dict[str, Any]) -> Optional[LaunchPlan]:
    """The relay launch for a job, or None when its queue does not burst.

    `job`: id, queue, env (the job's environment), pbs_home, and charged (Resource_List[CHARGE_RESOURCE]).
    """
    if str(job.get("queue") or "") not in RESCALE_QUEUES:
        return None
    request, warning = decode_request(job.get("env", {}).get(REQUEST_VARIABLE))
    charged = job.get("charged")
    if CHARGE_RESOURCE and charged is not None and estimated_cores(request) > int(charged):
        raise LaunchError(f"the request asks for {estimated_cores(request)} cores but the job was charged "
                          f"{CHARGE_RESOURCE}={charged}: its request was altered after submission")
    job_dir = os.path.join(RUN_DIR, job_dir_name(str(job["id"])))
    script_path = os.path.join(job_dir, "script")
    request_path = os.path.join(job_dir, "request.json")
    argv = [BURST_AGENT, "relay", "--script", script_path, "--request", request_path]
    if SPOOL_DIR:
        argv += ["--spool", SPOOL_DIR]
    return LaunchPlan(
        job_dir=job_dir,
        script_source=os.path.join(str(job["pbs_home"]), "mom_priv", "jobs", str(job["id"]) + SCRIPT_SUFFIX),
        script_path=script_path,
        request_path=request_path,
        request_text=json.dumps(request) + "\n",
        progname=BURST_AGENT,
        argv=tuple(argv),
        warning=warning,
    )


# ---------------------------------------------------------------------------------------------
# file system


def _read_script(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise LaunchError(f"cannot read the job script {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _write_private(path: str, data: bytes, uid: int, gid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchown(f.fileno(), uid, gid)
        os.fchmod(f.fileno(), 0o600)
        f.write(data)


def write_job_files(plan: LaunchPlan, uid: int, gid: int) -> None:
    """RUN_DIR/<job>/{script,request.json}: written while the directory is still root's, then handed over."""
    script = _read_script(plan.script_source)
    os.makedirs(os.path.dirname(plan.job_dir), mode=0o711, exist_ok=True)
    remove_job_dir(plan.job_dir)  # a launch the MoM retries starts clean
    os.mkdir(plan.job_dir, 0o700)
    _write_private(plan.script_path, script, uid, gid)
    _write_private(plan.request_path, plan.request_text.encode("utf-8"), uid, gid)
    os.chown(plan.job_dir, uid, gid, follow_symlinks=False)


def remove_job_dir(job_dir: str) -> None:
    """Remove a job's directory (rmtree unlinks symlinks inside, never follows them)."""
    if os.path.isdir(job_dir) and not os.path.islink(job_dir):
        shutil.rmtree(job_dir, ignore_errors=True)


def owner_ids(user: str, group: Optional[str]) -> Tuple[int, int]:
    """uid and gid the job runs as (egroup when set, else the user's login group)."""
    import grp  # POSIX only, like the MoM side of PBS
    import pwd

    try:
        entry = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    except KeyError as exc:
        raise LaunchError(f"unknown user or group for the job: {user}/{group}") from exc
    return entry.pw_uid, gid


# ---------------------------------------------------------------------------------------------
# the PBS-facing shell


def _queue_name(queue: Any) -> str:
    name = getattr(queue, "name", queue)
    return "" if name is None else str(name).partition("@")[0]


def job_info(pbs: Any, event: Any) -> Dict[str, Any]:
    job = event.job
    resources = job.Resource_List
    return {
        "id": str(job.id),
        "queue": _queue_name(job.queue),
        "env": dict(event.env or {}),
        "pbs_home": pbs.pbs_conf.get("PBS_MOM_HOME") or pbs.pbs_conf["PBS_HOME"],
        "charged": resources[CHARGE_RESOURCE] if CHARGE_RESOURCE and resources is not None else None,
    }


def launch(pbs: Any, event: Any) -> None:
    plan = plan_launch(job_info(pbs, event))
    if plan is None:
        event.accept()
    if plan.warning:
        pbs.logmsg(pbs.LOG_WARNING, f"burst-agent: job {event.job.id}: {plan.warning}")
    write_job_files(plan, *owner_ids(str(event.job.euser), event.job.egroup and str(event.job.egroup)))
    event.progname = plan.progname
    event.argv = list(plan.argv)
    if REQUEST_VARIABLE in event.env:
        del event.env[REQUEST_VARIABLE]
    pbs.logmsg(pbs.LOG_DEBUG, f"burst-agent: job {event.job.id}: relay {' '.join(plan.argv)}")


def main() -> None:
    import pbs  # only inside PBS (tests use a stand-in)

    event = pbs.event()
    if event.type == pbs.EXECJOB_END:
        if _queue_name(event.job.queue) in RESCALE_QUEUES:
            remove_job_dir(os.path.join(RUN_DIR, job_dir_name(str(event.job.id))))
        event.accept()
    if event.type != pbs.EXECJOB_LAUNCH:
        event.accept()
    try:
        launch(pbs, event)
    except (LaunchError, OSError) as exc:
        message = f"burst-agent: job {event.job.id}: cannot start the relay: {exc}"
        pbs.logmsg(pbs.LOG_ERROR, message)
        event.reject(message)
    event.accept()


# PBS runs a hook with __name__ "builtins" (Python 3) or "__builtin__" (2): importing it does not run it.
if __name__ in ("builtins", "__builtin__"):
    main()
