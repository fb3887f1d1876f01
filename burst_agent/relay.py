"""The relay: runs as the user inside the scheduler job, hands the job to the agent, mirrors its fate.

It writes the spool entry (so the entry's owner is the user, by the kernel's word), prepares the
inputs as the user, appends the remote log to its own stdout (the job's output file), writes the
outputs into the workdir as the user, and exits with the remote script's exit code.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from burst_agent.config import StagingConfig
from burst_agent.relayproto import call
from burst_agent.spool import Spool, submit_entry
from burst_agent.staging.bundle import write_bundle
from burst_agent.staging.confined import write_output
from burst_agent.staging.jobplan import job_plan
from burst_agent.staging.safepath import UnsafePathError

# Scheduler environment -> request key, first match wins (Slurm, then PBS).
JOB_ID_VARS = ("SLURM_JOB_ID", "PBS_JOBID")
ARRAY_VARS = ("SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX")
WORKDIR_VARS = ("SLURM_SUBMIT_DIR", "PBS_O_WORKDIR")
INPUT_BUNDLE = "input-bundle.tar.gz"
INPUT_MANIFEST = "input-manifest.json"
EXIT_ON_CANCEL = 143
EXIT_NO_CODE = 1


def _first(environ: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[n] for n in names if environ.get(n)), None)


def complete_request(request: dict[str, Any], environ: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Fill in what only the running job knows: its id, array index and working directory."""
    done = dict(request)
    done["job_id"] = _first(environ, JOB_ID_VARS) or done.get("job_id")
    array = _first(environ, ARRAY_VARS)
    if array is not None and array.isdigit():
        done["array_task_id"] = int(array)
    done["workdir"] = done.get("workdir") or _first(environ, WORKDIR_VARS) or str(cwd)
    return done


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


def prepare_inputs(entry_dir: Path, workdir: Path, script: str, staging: StagingConfig) -> list[str]:
    """Bundle the small inputs and place the large ones in the entry (as the user); the warnings.

    Flat names only: the agent's group may delete files in the entry directory, not in subdirectories.
    """
    plan = job_plan(workdir, script, entry_dir / "script", staging, exclude=[])
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
    """One job's relay; `run()` returns the exit code the scheduler should record."""

    def __init__(self, spool: Path, out: BinaryIO, poll_s: float = 1.0) -> None:
        self.spool = Spool(spool)
        self.out = out
        self.poll_s = poll_s
        self.cancel = threading.Event()
        self.offset = 0

    def say(self, text: str) -> None:
        self.out.write(f"burst-agent: {text}\n".encode())
        self.out.flush()

    def ask(self, message: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """One request; while the agent is away (restarting), keep trying: the job is not lost."""
        warned = False
        while True:
            try:
                return call(self.spool.socket_path, message)
            except OSError as exc:
                if not warned:
                    self.say(f"agent unreachable ({exc.strerror or exc}); retrying")
                    warned = True
                if self.cancel.is_set() and message.get("op") != "cancel":
                    raise
                time.sleep(self.poll_s)

    def submit(self, script: str, request: dict[str, Any], staging: StagingConfig) -> str:
        workdir = Path(request["workdir"])
        warnings: list[str] = []
        name = submit_entry(
            self.spool, script, request,
            build=lambda entry_dir: warnings.extend(prepare_inputs(entry_dir, workdir, script, staging)),
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

    def wait(self, entry: str, workdir: Path, lost_after_s: float = 300.0) -> int:
        lost_since: float | None = None
        while True:
            if self.cancel.is_set():
                self.ask({"op": "cancel", "entry": entry})
                self.say("cancel requested: the remote job is being stopped")
                return EXIT_ON_CANCEL
            answer, _ = self.ask({"op": "status", "entry": entry, "offset": self.offset})
            self._log(answer)
            state = answer.get("state")
            if state == "failed" and "terminal" not in answer:  # rejected before it became a job
                self.say(f"job rejected: {answer.get('reason')}")
                return EXIT_NO_CODE
            if state == "unknown":
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > lost_after_s:
                    self.say(f"the agent has no record of {entry}; giving up")
                    return EXIT_NO_CODE
            else:
                lost_since = None
            if answer.get("terminal") and self.offset >= int(answer.get("log_size", 0)):
                return self._finish(entry, workdir, answer)
            if not answer.get("log"):
                self.cancel.wait(self.poll_s)

    def _finish(self, entry: str, workdir: Path, answer: dict[str, Any]) -> int:
        self._deliver(entry, workdir)
        state, code = answer["state"], answer.get("exit_code")
        if answer.get("reason"):
            self.say(f"{state}: {answer['reason']}")
        if state == "cancelled":
            return EXIT_ON_CANCEL
        return int(code) if code is not None else EXIT_NO_CODE


def run_relay(script_path: Path, request_path: Path, spool: Path, staging: StagingConfig) -> int:
    script = script_path.read_text(encoding="utf-8")
    request = complete_request(json.loads(request_path.read_text(encoding="utf-8")), dict(os.environ),
                               Path.cwd())
    relay = Relay(spool, sys.stdout.buffer)
    signal.signal(signal.SIGTERM, lambda *_: relay.cancel.set())
    signal.signal(signal.SIGINT, lambda *_: relay.cancel.set())
    try:
        entry = relay.submit(script, request, staging)
    except (OSError, ValueError) as exc:
        relay.say(f"could not hand the job to the agent: {exc}")
        return EXIT_NO_CODE
    return relay.wait(entry, Path(request["workdir"]))
