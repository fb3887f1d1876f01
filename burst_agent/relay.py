"""The relay: runs as the user inside the scheduler job, hands the job to the agent, mirrors its fate.

It writes the spool entry (so the entry's owner is the user, by the kernel's word), prepares the
inputs as the user, appends the remote log to its own stdout (the job's output file), writes the
outputs into the workdir as the user, and exits with the remote script's exit code.
"""

from __future__ import annotations

import base64
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
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

from burst_agent.config import StagingConfig
from burst_agent.dialects.registry import CARRIED_NAMES, DIALECTS, variables
from burst_agent.outpaths import expand
from burst_agent.relayaddr import AgentAddress
from burst_agent.relaynet import StreamBroken, transport_for
from burst_agent.relayproto import AgentBusy, ProtocolError
from burst_agent.requeue import being_requeued, came_back, restart_count
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
ACCOUNT_VARS = variables(lambda d: (d.account_var,))
QOS_VARS = variables(lambda d: (d.qos_var,))
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
# How a relay keeps its own scheduler job's record of the remote life (where the job's owner may):
# (job id variable, array job and task variables, command while the job lives, once it has ended).
RECORDERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...] | None], ...] = tuple(
    (d.job_id_var, (d.array_job_var, *d.array_task_vars) if d.array_job_var else (), d.show_record,
     d.keep_record) for d in DIALECTS.values() if d.job_id_var and d.show_record
)
RECORD_REFRESH_S = 300.0  # while the phase holds, the record's cost estimate is refreshed this often
RECORD_TIMEOUT_S = 15.0
QUIET_BUSY_S = 60.0  # a busy agent is retried without a word for this long
# What a running agent under load answers: its caps (busy), a full listen backlog (EAGAIN), a refusal
# that closed before our request was read. An agent that is down refuses (ECONNREFUSED) or is absent.
BUSY = (AgentBusy, BlockingIOError, BrokenPipeError, ConnectionResetError)
OUTPUT_TRIES = 3  # an output whose stream broke (TCP) is fetched again this often in all
T = TypeVar("T")
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
    done["account"] = done.get("account") or _first(environ, ACCOUNT_VARS)  # the scheduler's default too
    done["qos"] = done.get("qos") or _first(environ, QOS_VARS)  # the tier may follow it (tiers.py)
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
        environ: dict[str, str] | None = None, agents: Sequence[AgentAddress] = (),
    ) -> None:
        self.spool = Spool(spool)
        self.transport = transport_for(self.spool.socket_path, agents)  # TCP + MUNGE to `agents`, if any
        self.out = out
        self.poll_s = poll_s
        self.cancel = threading.Event()
        self.offset = offset
        self.log_file = log_file
        self.deliver = deliver
        self.deadline = deadline
        self.environ = environ if environ is not None else dict(os.environ)
        self.requeued = lambda: being_requeued(self.environ)  # a SIGTERM that is a requeue, not a cancel
        self._recorded: tuple[Any, ...] = ()  # (phase, remote job id, text) last put in the record
        self._recorded_at = float("-inf")

    def say(self, text: str) -> None:
        self.out.write(f"burst-agent: {text}\n".encode())
        self.out.flush()

    def ask(self, message: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """One request, retried while the agent is away or busy (see _retry)."""
        return self._retry(lambda: self.transport.call(message))

    def _retry(self, attempt: Callable[[], T]) -> T:
        """While the agent is away (restarting) or busy, keep trying: the job is not lost.

        A busy agent (its connection caps, a full listen backlog: EAGAIN) is load, not trouble: retried
        quietly with a jittered pause. Only an agent that stays unreachable is worth a line in the log.
        """
        troubled_since: float | None = None
        warned = False
        while True:
            try:
                return attempt()
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

    def reattach(self, scheduler_job_id: str, own_log_size: int) -> str | None:
        """A requeued job's next run: the entry of the job its earlier run handed to the agent (the
        caller's own job of this scheduler job id), to follow again instead of making another remote
        job; None if the agent has none. The log is written again from the start when the scheduler
        truncated the output file for this run (its default), else from where the last run stood."""
        entry = self.ask({"op": "find", "scheduler_job_id": scheduler_job_id})[0].get("entry")
        if not isinstance(entry, str):
            return None
        where = self.ask({"op": "resume", "entry": entry})[0]
        if where.get("state") in (None, "unknown"):
            return None
        offset = int(where.get("offset") or 0)
        self.offset = offset if own_log_size >= offset else 0
        self.say(f"requeued: the remote job of {entry} goes on; following it again")
        return entry

    def _log(self, answer: dict[str, Any]) -> None:
        data = base64.b64decode(answer.get("log") or "")
        if data:
            self.out.write(data)
            self.out.flush()
            self.offset += len(data)

    def _deliver(self, entry: str, workdir: Path) -> None:
        answer, _ = self.ask({"op": "outputs", "entry": entry})
        broken = [rel for rel in answer.get("files", []) if not self._deliver_one(entry, workdir, rel)]
        if broken:  # not `delivered`: the agent keeps them, and `burst-agent deliver` brings them
            self.say(f"{len(broken)} output(s) did not arrive whole; the agent keeps them")
            return
        self.ask({"op": "delivered", "entry": entry})

    def _deliver_one(self, entry: str, workdir: Path, rel: str) -> bool:
        """Fetch one output (a passed descriptor, or its stream over TCP) and write it, confined; False
        only when its bytes never arrived whole."""
        message = {"op": "output", "entry": entry, "path": rel}
        for _attempt in range(OUTPUT_TRIES):
            reply, source = self._retry(lambda: self.transport.fetch(message))
            if source is None:
                self.say(f"output {rel}: {reply.get('error')}")
                return True
            with source:
                try:
                    write_output(workdir, PurePosixPath(rel), source)
                    return True
                except UnsafePathError as exc:  # e.g. a symlink planted where the output goes
                    self.say(f"output {rel!r} refused: {exc}")
                    return True
                except StreamBroken as exc:
                    self.say(f"output {rel}: {exc.strerror}")
                except OSError as exc:
                    self.say(f"output {rel} not written: {exc}")
                    return True
        return False

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
                if self.requeued():
                    self.say("the scheduler requeues this job: its remote job goes on, and the job's next"
                             " run follows it")
                    return EXIT_ON_CANCEL
                self._request_cancel(entry)
                cancel_sent = True
            answer, _ = self.ask({"op": "status", "entry": entry, "offset": self.offset,
                                  "log_file": self.log_file or ""})
            self._log(answer)
            if not shown and answer.get("remote_job_id") and answer.get("hardware") and not self.deliver:
                self.say(f"running on Rescale as job {answer['remote_job_id']}: {answer['hardware']}")
                shown = True
            self._record(answer)
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
        self._record(answer, force=True)
        state, code = answer["state"], answer.get("exit_code")
        if answer.get("reason"):
            self.say(f"{state}: {answer['reason']}")
        if state == "cancelled":
            if not self.cancel.is_set() and not self.deliver:
                self._cancel_own_job()
            return EXIT_ON_CANCEL
        return int(code) if code is not None else EXIT_NO_CODE

    def _record(self, answer: dict[str, Any], *, force: bool = False) -> None:
        """Put the agent's record of the remote life (phase, Rescale job, shape, window, cost) into the
        scheduler's record of this job: when the phase changes, every RECORD_REFRESH_S, and at the end.
        A delivery runs after the job ended, so it writes to the accounting database straight away."""
        text = answer.get("record")
        if not isinstance(text, str) or not text:
            return
        key = (answer.get("phase"), answer.get("remote_job_id"))
        now = time.monotonic()
        fresh = key == self._recorded[:2] and now - self._recorded_at < RECORD_REFRESH_S
        if self._recorded[2:] == (text,) or (fresh and not force):
            return
        self._recorded, self._recorded_at = (*key, text), now
        for variable, array_vars, live, ended in RECORDERS:
            job_id = self.environ.get(variable)
            if not job_id:
                continue
            array = [self.environ.get(v) for v in array_vars[:2]]
            job_ref = "_".join(array) if len(array) == 2 and all(array) else job_id  # type: ignore[arg-type]
            commands = [c for c in ((ended, live) if self.deliver else (live, ended)) if c]
            for argv in commands:
                if _ran([a.format(job_id=job_id, job_ref=job_ref, text=text) for a in argv]):
                    break

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


def _ran(argv: list[str]) -> bool:
    """Run a scheduler command quietly; True if it succeeded (a record is a courtesy, never fatal)."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=RECORD_TIMEOUT_S, check=False)
        return done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def own_log_file(fd: int = 1) -> str | None:
    """The real path of our stdout when it is a regular file (the job's slurm-N.out), else None."""
    try:
        st = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return path if stat.S_ISREG(st.st_mode) and path.startswith("/") else None


def run_relay(script_path: Path, request_path: Path, spool: Path, staging: StagingConfig,
              agents: Sequence[AgentAddress] = ()) -> int:
    script = script_path.read_text(encoding="utf-8")
    request = complete_request(json.loads(request_path.read_text(encoding="utf-8")), dict(os.environ),
                               Path.cwd())
    relay = Relay(spool, sys.stdout.buffer, log_file=own_log_file(), agents=agents)
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        relay.cancel.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    job_id = request.get("job_id")
    log_file = relay.log_file
    again = restart_count(dict(os.environ)) > 0 and isinstance(job_id, str)
    try:
        entry = relay.reattach(str(job_id), _size(log_file)) if again else None
        entry = entry or relay.submit(script, request, staging)
    except (OSError, ValueError) as exc:
        relay.say(f"could not hand the job to the agent: {exc}")
        return EXIT_NO_CODE
    code = relay.wait(entry, Path(request["workdir"]))
    if received:  # end the way a job's script ends on scancel or a time limit: by the signal (0:15)
        signal.signal(received[0], signal.SIG_DFL)
        os.kill(os.getpid(), received[0])
    return code


def _size(path: str | None) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except OSError:
        return 0


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


def run_delivery(spool: Path, scheduler_job_id: str, max_wait_s: float = DELIVERY_MAX_WAIT_S,
                 agents: Sequence[AgentAddress] = ()) -> int:
    """After the relay died (scancel or a time limit outlasting KillWait): finish its log and deliver the
    outputs into the workdir, as the job's owner. Quiet and 0 when there is nothing to do."""
    probe = Relay(spool, io.BytesIO(), deadline=time.monotonic() + DELIVERY_CONNECT_S, agents=agents)
    if not probe.transport.here():
        return 0  # not a proxy node of this spool
    if came_back("slurm", scheduler_job_id):
        return 0  # requeued: the job's next run follows its remote job (requeue.py)
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
    # The epilog resets the environment: the job whose record to keep is the one named.
    environ = {variable: scheduler_job_id for variable, *_commands in RECORDERS}
    relay = Relay(spool, out, poll_s=DELIVERY_POLL_S, log_file=log_file, offset=int(where.get("offset") or 0),
                  deliver=True, deadline=time.monotonic() + max_wait_s, environ=environ, agents=agents)
    relay.say("the relay ended before the job's outputs came back: delivering them now")
    with out:
        try:
            return relay.wait(entry, Path(where["workdir"]))
        except (OSError, ProtocolError) as exc:
            relay.say(f"delivery gave up: {exc}")
            return EXIT_NO_CODE
