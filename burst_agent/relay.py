"""The relay: runs as the user inside the scheduler job, hands the job to the agent, mirrors its fate.

It writes the spool entry (so the entry's owner is the user, by the kernel's word), prepares the
inputs as the user, appends the remote log to its own stdout (the job's output file), writes the
outputs into the workdir as the user, and exits with the remote script's exit code.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pwd
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from burst_agent.config import StagingConfig
from burst_agent.dialects.registry import CARRIED_NAMES, DIALECTS, variables
from burst_agent.outpaths import expand
from burst_agent.relayproto import AgentBusy, ProtocolError, call
from burst_agent.spool import Spool, submit_entry
from burst_agent.staging.bundle import write_bundle
from burst_agent.staging.confined import write_output
from burst_agent.staging.jobplan import job_plan
from burst_agent.staging.safepath import UnsafePathError

# Scheduler environment -> request key, first match wins (Slurm, then PBS Pro, then Torque).
JOB_ID_VARS = variables(lambda d: (d.job_id_var,))
ARRAY_VARS = variables(lambda d: d.array_task_vars)
ARRAY_JOB_VARS = variables(lambda d: (d.array_job_var,))
JOB_NAME_VARS = variables(lambda d: (d.job_name_var,))
WORKDIR_VARS = variables(lambda d: (d.workdir_var,))
OWN_STREAMS = ("/proc/self/fd/1", "/proc/self/fd/2")  # the job's output files, opened by the scheduler
INPUT_BUNDLE = "input-bundle.tar.gz"
INPUT_MANIFEST = "input-manifest.json"
EXIT_ON_CANCEL = 143
EXIT_NO_CODE = 1
# How a relay cancels its own scheduler job (the job id variable, the command as the job's owner).
SELF_CANCEL: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (d.job_id_var, d.self_cancel) for d in DIALECTS.values() if d.job_id_var and d.self_cancel
)
SELF_CANCEL_WAIT_S = 5.0
# How a relay shows in its own scheduler job what runs on Rescale (where the job's owner may).
SHOW_SHAPE: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (d.job_id_var, d.show_shape) for d in DIALECTS.values() if d.job_id_var and d.show_shape
)
QUIET_BUSY_S = 60.0  # a busy agent is retried without a word for this long
# What a running agent under load answers: its caps (busy), a full listen backlog (EAGAIN), a refusal
# that closed before our request was read. An agent that is down refuses (ECONNREFUSED) or is absent.
BUSY = (AgentBusy, BlockingIOError, BrokenPipeError, ConnectionResetError)
DELIVERY_CONNECT_S = 60.0  # a delivery that finds no agent for this long has nothing to deliver to
DELIVERY_MAX_WAIT_S = 7 * 86400.0  # and one whose job never ends gives up after a week
DELIVERY_POLL_S = 2.0


def _first(environ: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[n] for n in names if environ.get(n)), None)


def complete_request(request: dict[str, Any], environ: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Fill in what only the running job knows: its id, array index, working directory, and the
    scheduler's own variables as they are (`scheduler_env`: exported unchanged on the remote side)."""
    done = dict(request)
    done["job_id"] = _first(environ, JOB_ID_VARS) or done.get("job_id")
    array = _first(environ, ARRAY_VARS)
    if array is not None and array.isdigit():
        done["array_task_id"] = int(array)
    done["workdir"] = done.get("workdir") or _first(environ, WORKDIR_VARS) or str(cwd)
    carried = {name: environ[name] for name in sorted(CARRIED_NAMES) if environ.get(name)}
    if carried:
        done["scheduler_env"] = carried
    return done


def _own_streams() -> list[Path]:
    """The files this process's stdout and stderr are: under Slurm, the job's -o and -e files."""
    found = []
    for link in OWN_STREAMS:
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("/"):  # not "pipe:[...]" or "socket:[...]"
            found.append(Path(target))
    return found


def job_output_files(request: dict[str, Any], workdir: Path, environ: dict[str, str]) -> list[Path]:
    """The job's own stdout/stderr files: its open streams and its request's patterns, expanded."""
    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    values = {
        "job_id": text(request.get("job_id")), "user": _user_name(),
        "job_name": text(request.get("job_name")) or _first(environ, JOB_NAME_VARS),
        "array_job_id": _first(environ, ARRAY_JOB_VARS), "array_task_id": text(request.get("array_task_id")),
    }
    patterns = [request.get(key) for key in ("stdout", "stderr")]
    named = [workdir / expand(p, values) for p in patterns if isinstance(p, str) and p]
    return [*_own_streams(), *named]


def _user_name() -> str | None:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def _place(source: Path, dest: Path) -> None:
    """A hard link to the user's own world-readable file (no copy of a 10 GB mesh), else a copy.

    Only the user's own file: the agent refuses an input owned by anyone but the job's owner.
    """
    st = source.stat()
    if st.st_mode & 0o004 and st.st_uid == os.getuid():
        try:
            os.link(source, dest)
            return
        except OSError:
            pass
    shutil.copyfile(source, dest)
    dest.chmod(0o644)


def prepare_inputs(entry_dir: Path, workdir: Path, script: str, staging: StagingConfig,
                   request: dict[str, Any] | None = None) -> list[str]:
    """Bundle the small inputs and place the large ones in the entry (as the user); the warnings.

    The job's own output files are left out (as the agent does for its own entries), and so is a
    workdir file with the script's bytes (job_plan). Flat names only: the agent's group may delete
    files in the entry directory, not in subdirectories.
    """
    exclude = job_output_files(request or {}, workdir, dict(os.environ))
    plan = job_plan(workdir, script, entry_dir / "script", staging, exclude=exclude)
    md5s, _archive_md5 = write_bundle(replace(plan, large_files=[]), entry_dir / INPUT_BUNDLE)
    (entry_dir / INPUT_BUNDLE).chmod(0o644)
    large = []
    for index, member in enumerate(plan.large_files):
        name = f"input-large-{index}"
        _place(member.source, entry_dir / name)
        large.append({"rel": str(member.rel), "file": name, "size": member.size})
    manifest = entry_dir / INPUT_MANIFEST
    manifest.write_text(json.dumps({"bundle": INPUT_BUNDLE, "bundle_md5s": md5s, "large": large}))
    manifest.chmod(0o644)
    return list(plan.warnings)


class Relay:
    """One job's relay; `run()` returns the exit code the scheduler should record.

    A delivery (`deliver=True`) is the same loop started after the relay died (from the scheduler's
    epilog, as the job's owner): it goes on from where the relay's log stood and never cancels anything.
    """

    def __init__(
        self, spool: Path, out: BinaryIO, poll_s: float = 1.0, *, log_file: str | None = None,
        offset: int = 0, deliver: bool = False, deadline: float | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.spool = Spool(spool)
        self.out = out
        self.poll_s = poll_s
        self.cancel = threading.Event()
        self.offset = offset
        self.log_file = log_file
        self.deliver = deliver
        self.deadline = deadline
        self.environ = environ if environ is not None else dict(os.environ)

    def say(self, text: str) -> None:
        self.out.write(f"burst-agent: {text}\n".encode())
        self.out.flush()

    def ask(self, message: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """One request; while the agent is away (restarting) or busy, keep trying: the job is not lost.

        A busy agent (its connection caps, a full listen backlog: EAGAIN) is load, not trouble: retried
        quietly with a jittered pause. Only an agent that stays unreachable is worth a line in the log.
        """
        troubled_since: float | None = None
        warned = False
        while True:
            try:
                return call(self.spool.socket_path, message)
            except OSError as exc:
                now = time.monotonic()
                troubled_since = troubled_since or now
                if self.deadline is not None and now > self.deadline:
                    raise
                quiet = isinstance(exc, BUSY) and now - troubled_since < QUIET_BUSY_S
                if not quiet and not warned:
                    self.say(f"agent unreachable ({exc.strerror or exc}); retrying")
                    warned = True
                time.sleep(random.uniform(0.05, 0.5) if quiet else self.poll_s)

    def submit(self, script: str, request: dict[str, Any], staging: StagingConfig) -> str:
        workdir = Path(request["workdir"])
        warnings: list[str] = []
        name = submit_entry(
            self.spool, script, request,
            build=lambda entry_dir: warnings.extend(prepare_inputs(entry_dir, workdir, script, staging,
                                                                   request=request)),
        )
        for warning in warnings:
            self.say(f"input skipped: {warning}")
        self.say(f"job handed to the agent as {name}")
        return name

    def _log(self, answer: dict[str, Any]) -> None:
        data = base64.b64decode(answer.get("log") or "")
        if data:
            self.out.write(data)
            self.out.flush()
            self.offset += len(data)

    def _deliver(self, entry: str, workdir: Path) -> None:
        answer, _ = self.ask({"op": "outputs", "entry": entry})
        for rel in answer.get("files", []):
            reply, fds = self.ask({"op": "output", "entry": entry, "path": rel})
            if not fds:
                self.say(f"output {rel}: {reply.get('error')}")
                continue
            with os.fdopen(fds[0], "rb") as source:
                try:
                    write_output(workdir, PurePosixPath(rel), source)
                except UnsafePathError as exc:  # e.g. a symlink planted where the output goes
                    self.say(f"output {rel!r} refused: {exc}")
                except OSError as exc:
                    self.say(f"output {rel} not written: {exc}")
        self.ask({"op": "delivered", "entry": entry})

    def _request_cancel(self, entry: str) -> None:
        answer, _ = self.ask({"op": "cancel", "entry": entry})
        if answer.get("error"):  # not recorded yet: the orphan check stops it once it is
            self.say(f"cancel requested: {answer['error']}")
            return
        more = "; the outputs and the rest of the log follow" if not answer.get("terminal") else ""
        self.say(f"cancel requested: the remote job is being stopped{more}")

    def wait(self, entry: str, workdir: Path, lost_after_s: float = 300.0) -> int:
        """Follow the job to its end: the log as it grows, then the outputs (also after a cancel: the
        scheduler gives the relay KillWait seconds between SIGTERM and SIGKILL, and a delivery started
        by the epilog finishes whatever that time did not allow)."""
        lost_since: float | None = None
        cancel_sent = shown = False
        while True:
            if self.cancel.is_set() and not cancel_sent and not self.deliver:
                self._request_cancel(entry)
                cancel_sent = True
            answer, _ = self.ask({"op": "status", "entry": entry, "offset": self.offset,
                                  "log_file": self.log_file or ""})
            self._log(answer)
            if not shown and answer.get("remote_job_id") and answer.get("hardware") and not self.deliver:
                shown = self._show_shape(answer)
            state = answer.get("state")
            if state == "failed" and "terminal" not in answer:  # rejected before it became a job
                self.say(f"job rejected: {answer.get('reason')}")
                return EXIT_NO_CODE
            if state == "unknown":
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > lost_after_s or cancel_sent:
                    self.say(f"the agent has no record of {entry}; giving up")
                    return EXIT_ON_CANCEL if cancel_sent else EXIT_NO_CODE
            else:
                lost_since = None
            if answer.get("terminal") and self.offset >= int(answer.get("log_size", 0)):
                return self._finish(entry, workdir, answer)
            if not answer.get("log"):
                time.sleep(self.poll_s) if self.cancel.is_set() else self.cancel.wait(self.poll_s)

    def _finish(self, entry: str, workdir: Path, answer: dict[str, Any]) -> int:
        self._deliver(entry, workdir)
        state, code = answer["state"], answer.get("exit_code")
        if answer.get("reason"):
            self.say(f"{state}: {answer['reason']}")
        if state == "cancelled":
            if not self.cancel.is_set() and not self.deliver:
                self._cancel_own_job()
            return EXIT_ON_CANCEL
        return int(code) if code is not None else EXIT_NO_CODE

    def _show_shape(self, answer: dict[str, Any]) -> bool:
        """Put the remote job's id and shape into the scheduler's record of this job, once."""
        text = f"rescale {answer['remote_job_id']}: {answer['hardware']} = {answer.get('cores')} cores"
        self.say(f"running on Rescale as job {answer['remote_job_id']}: {answer['hardware']}")
        for variable, argv in SHOW_SHAPE:
            job_id = self.environ.get(variable)
            if job_id:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    subprocess.run([a.format(job_id=job_id, text=text) for a in argv], capture_output=True,
                                   timeout=30, check=False)
        return True

    def _cancel_own_job(self) -> None:
        """Cancelled by the agent (an admin, the orphan check, Rescale): cancel our own scheduler job, as
        its owner, so the scheduler records CANCELLED rather than a failure with exit code 143."""
        for variable, argv in SELF_CANCEL:
            job_id = self.environ.get(variable)
            if not job_id:
                continue
            try:
                done = subprocess.run([*argv, job_id], capture_output=True, text=True, timeout=30,
                                      check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.say(f"could not cancel job {job_id} in the scheduler ({exc})")
                return
            if done.returncode != 0:
                self.say(f"could not cancel job {job_id} in the scheduler: {done.stderr.strip()[:200]}")
                return
            self.cancel.wait(SELF_CANCEL_WAIT_S)  # the scheduler's SIGTERM, if it comes
            return


def own_log_file(fd: int = 1) -> str | None:
    """The real path of our stdout when it is a regular file (the job's slurm-N.out), else None."""
    try:
        st = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return path if stat.S_ISREG(st.st_mode) and path.startswith("/") else None


def run_relay(script_path: Path, request_path: Path, spool: Path, staging: StagingConfig) -> int:
    script = script_path.read_text(encoding="utf-8")
    request = complete_request(json.loads(request_path.read_text(encoding="utf-8")), dict(os.environ),
                               Path.cwd())
    relay = Relay(spool, sys.stdout.buffer, log_file=own_log_file())
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        relay.cancel.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        entry = relay.submit(script, request, staging)
    except (OSError, ValueError) as exc:
        relay.say(f"could not hand the job to the agent: {exc}")
        return EXIT_NO_CODE
    code = relay.wait(entry, Path(request["workdir"]))
    if received:  # end the way a job's script ends on scancel or a time limit: by the signal (0:15)
        signal.signal(received[0], signal.SIG_DFL)
        os.kill(os.getpid(), received[0])
    return code


def _append_only(path: str) -> BinaryIO | None:
    """The job's log file opened to append, as its owner: never through a symlink, never created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "ab")


def run_delivery(spool: Path, scheduler_job_id: str, max_wait_s: float = DELIVERY_MAX_WAIT_S) -> int:
    """After the relay died (scancel or a time limit outlasting KillWait): finish its log and deliver the
    outputs into the workdir, as the job's owner. Quiet and 0 when there is nothing to do."""
    probe = Relay(spool, io.BytesIO(), deadline=time.monotonic() + DELIVERY_CONNECT_S)
    if not probe.spool.socket_path.exists():
        return 0  # not a proxy node of this spool
    try:
        entry = probe.ask({"op": "find", "scheduler_job_id": scheduler_job_id})[0].get("entry")
        if not isinstance(entry, str):
            return 0
        where = probe.ask({"op": "resume", "entry": entry})[0]
    except (OSError, ProtocolError):
        return 0  # no agent here (not a proxy node, or it is gone): nothing this process can do
    if where.get("delivered") or not isinstance(where.get("workdir"), str):
        return 0
    log_file = where.get("log_file") if isinstance(where.get("log_file"), str) else None
    out = (_append_only(log_file) if log_file else None) or io.BytesIO()
    relay = Relay(spool, out, poll_s=DELIVERY_POLL_S, log_file=log_file,
                  offset=int(where.get("offset") or 0), deliver=True, deadline=time.monotonic() + max_wait_s)
    relay.say("the relay ended before the job's outputs came back: delivering them now")
    with out:
        try:
            return relay.wait(entry, Path(where["workdir"]))
        except (OSError, ProtocolError) as exc:
            relay.say(f"delivery gave up: {exc}")
            return EXIT_NO_CODE
