"""Job execution: status progression, sandbox with inputs, the bash command, outputs, stops."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from burst_agent.rescale.emulator.files import ARCHIVE_MODES, extract_archive, md5_of
from burst_agent.rescale.emulator.store import TYPE_OUTPUT, USER_DIR, FileRecord, Job, Store, now_iso

log = logging.getLogger(__name__)

# Before the command runs: (job status or None, cluster status or None), one step apart.
PRE_EXECUTION: tuple[tuple[str | None, str | None], ...] = (
    ("Queued", "Not Started"),
    ("Started", None),
    ("Validated", "Starting"),
    (None, "Started"),
)
CLUSTER_SHUTDOWN = ("Stop Requested", "Stopping", "Stopped")
LOG_NAME = "process_output.log"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

# stop mode -> (statusReason, seconds between SIGTERM and SIGKILL (None: option), keep outputs)
STOP_MODES: dict[str, tuple[str, float | None, bool]] = {
    "stop": ("Job stopped by user", None, True),
    "force_stop": ("Job force stopped by user", 0.5, True),
    "shutdown": ("Job shut down by user; output files were discarded", 0.0, False),
    "walltime": ("Exceeds job walltime", None, True),
    "emulator": ("Emulator shutting down", 0.0, False),
    "no_capacity": ("Could not allocate compute resources", 0.0, False),
}


class JobRunner:
    """Drives each submitted job on its own thread."""

    def __init__(self, store: Store, jobs_dir: Path, step_seconds: float, stop_grace_seconds: float,
                 archive_inputs: str = "extract") -> None:
        if archive_inputs not in ARCHIVE_MODES:
            modes = ", ".join(ARCHIVE_MODES)
            raise ValueError(f"archive_inputs must be one of {modes}, not {archive_inputs!r}")
        self.archive_inputs = archive_inputs
        self.store = store
        self.jobs_dir = jobs_dir
        self.step = step_seconds
        self.grace = stop_grace_seconds
        self._closing = threading.Event()
        self.no_capacity: Callable[[], tuple[str, ...]] = lambda: ()  # coretypes (the fault settings')
        self._suspending = False  # shutdown(suspend=True): leave jobs as they are, for a reload

    def submit(self, job: Job) -> None:
        with self.store.lock:
            job.submitted = True
            job.add_status("Pending")
            job.thread = threading.Thread(target=self._drive, args=(job,), name=f"job-{job.id}", daemon=True)
        job.thread.start()

    def request_stop(self, job: Job, mode: str) -> None:
        with self.store.lock:
            if job.completed or job.stop_mode is not None:
                return
            job.stop_mode = mode
            job.add_status("Stopping")
        job.stop_event.set()

    def resume(self, job: Job) -> None:
        """Carry on a job a persisted emulator was running when it stopped: its command starts over in a
        fresh sandbox (the process died with the emulator), statuses already reached are not repeated."""
        if job.stop_mode is None:
            shutil.rmtree(self.jobs_dir / job.id / "work", ignore_errors=True)
            job.work_dir = None
            # Outputs the first run had recorded just before the stop are gone with its sandbox.
            with self.store.lock:
                for file_id in job.output_file_ids:
                    self.store.files.pop(file_id, None)
                job.output_file_ids = []
        target = self._drive if job.stop_mode is None else self._complete
        job.thread = threading.Thread(target=target, args=(job,), name=f"job-{job.id}", daemon=True)
        job.thread.start()

    def finish_cluster(self, job: Job) -> None:
        """A completed job whose cluster shutdown the stop interrupted: record the rest of it."""
        with self.store.lock:
            if not job.cluster_statuses:
                return
            last = job.cluster_status
            done = CLUSTER_SHUTDOWN.index(last) + 1 if last in CLUSTER_SHUTDOWN else 0
            for status in CLUSTER_SHUTDOWN[done:]:
                job.add_cluster_status(status)

    def shutdown(self, *, suspend: bool = False) -> None:
        """Stop every job: completed ("Emulator shutting down"), or with `suspend` left unfinished."""
        self._suspending = suspend
        self._closing.set()
        for job in self.store.jobs_newest_first():
            with self.store.lock:
                if job.stop_mode is None and not job.completed and not suspend:
                    job.stop_mode = "emulator"
            job.stop_event.set()
        for job in self.store.jobs_newest_first():
            if job.thread is not None:
                job.thread.join(timeout=5)

    def _drive(self, job: Job) -> None:
        try:
            if self._pre_execution(job) and not job.stop_event.wait(self.step):
                self._execute(job)
        except Exception:  # keep the emulator alive; the job still ends like Rescale's would
            log.exception("emulator job %s failed", job.id)
            with self.store.lock:
                job.stop_mode = job.stop_mode or "error"
        if not self._suspending:
            self._complete(job)

    def _pre_execution(self, job: Job) -> bool:
        for job_status, cluster_status in PRE_EXECUTION:
            if _reached(job, job_status, cluster_status):  # a resumed job
                continue
            if job.stop_event.wait(self.step):
                return False
            with self.store.lock:
                if job_status:
                    job.add_status(job_status)
                if cluster_status:
                    job.add_cluster_status(cluster_status)
                if cluster_status == "Starting" and _coretype(job) in self.no_capacity():
                    job.stop_mode = "no_capacity"
                    return False
        return True

    def _prepare_sandbox(self, job: Job) -> dict[str, tuple[int, int]]:
        work = self.jobs_dir / job.id / "work"
        work.mkdir(parents=True, exist_ok=True)
        with self.store.lock:
            inputs = [self.store.files[i] for i in job.input_file_ids if i in self.store.files]
        for record in inputs:
            dest = work / record.name
            shutil.copyfile(record.disk_path, dest)  # a copy: the command may change its inputs
            if self.archive_inputs != "place":
                unpack = self.archive_inputs == "unpack"
                extract_archive(dest, work, remove=unpack, decompress=unpack)
        job.work_dir = work
        return _snapshot(work)

    def _execute(self, job: Job) -> None:
        before = self._prepare_sandbox(job)
        analysis = job.analyses[0]
        work = job.work_dir
        if work is None:
            return
        env = {
            "PATH": SAFE_PATH,
            "HOME": str(work),
            "LANG": "C.UTF-8",
            "RESCALE_JOB_ID": job.id,
            "RESCALE_CORES_PER_SLOT": str(analysis["hardware"]["coresPerSlot"]),
            **(analysis.get("envVars") or {}),
        }
        command = "\n".join(a["command"] for a in job.analyses)
        with open(work / LOG_NAME, "wb") as out, self.store.lock:
            if job.status != "Executing":
                job.add_status("Executing")
            job.run_started = now_iso()
            job.process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_process(job, analysis["hardware"].get("walltime"))
        if self._suspending:
            return
        with self.store.lock:
            job.run_completed = now_iso()
            keep = STOP_MODES.get(job.stop_mode or "", ("", 0, True))[2]
        if keep:
            self._collect_outputs(job, work, before)

    def _wait_process(self, job: Job, walltime_hours: float | None) -> None:
        process = job.process
        if process is None:
            return
        deadline = time.monotonic() + walltime_hours * 3600 if walltime_hours else None
        while process.poll() is None:
            if job.stop_event.wait(0.05):
                break
            if deadline is not None and time.monotonic() > deadline:
                with self.store.lock:
                    job.stop_mode = "walltime"
                break
        if process.poll() is None:
            grace = STOP_MODES.get(job.stop_mode or "", ("", 0.0, True))[1]
            _terminate(process, self.grace if grace is None else grace)

    def _collect_outputs(self, job: Job, work: Path, before: dict[str, tuple[int, int]]) -> None:
        for rel, stamp in sorted(_snapshot(work).items()):
            if before.get(rel) == stamp:
                continue
            path = work / rel
            record = FileRecord(
                id=self.store.new_id(),
                name=path.name,
                disk_path=path,
                size=stamp[0],
                md5=md5_of(path),
                type_id=TYPE_OUTPUT,
                relative_path=rel,
                storage_path=f"{USER_DIR}/output/job_{job.id}/run1/{rel}",
            )
            with self.store.lock:
                self.store.add_file(record)
                job.output_file_ids.append(record.id)

    def _complete(self, job: Job) -> None:
        with self.store.lock:
            reason = STOP_MODES.get(job.stop_mode or "", ("Completed successfully",))[0]
            if job.stop_mode == "error":
                reason = "Job failed in the emulator"
            job.add_status("Completed", reason)
            has_cluster = bool(job.cluster_statuses)
        if not has_cluster:
            return
        for status in CLUSTER_SHUTDOWN:
            if self._closing.wait(self.step):
                return
            with self.store.lock:
                job.add_cluster_status(status)


def _reached(job: Job, job_status: str | None, cluster_status: str | None) -> bool:
    with_job = job_status is None or any(s.status == job_status for s in job.statuses)
    with_cluster = cluster_status is None or any(s.status == cluster_status for s in job.cluster_statuses)
    return with_job and with_cluster


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the command's process group, SIGKILL it after `grace` seconds."""
    sig = signal.SIGTERM if grace > 0 else signal.SIGKILL
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace if grace > 0 else 5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every regular file under root; symlinks are not followed."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            st = path.lstat()
            if path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


def _coretype(job: Job) -> str:
    return str((job.analyses[0].get("hardware") or {}).get("coreType") or "") if job.analyses else ""
