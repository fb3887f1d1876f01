"""Fixtures for the security tests: real users (runuser), the agent as the site runs it, the emulator.

Root only: the tests create processes as burstuser_a, burstuser_b and burst-agent (see
.ci/slurm-setup.sh and .ci/agent-install.sh). Processes of those users run the site install in
/opt/burst-agent/venv (the repo's .venv is not readable by them).
"""

from __future__ import annotations

import filecmp
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from rig import AgentRig
from waiting import terminate, wait_until

from burst_agent.rescale.emulator import EmulatorHandle, start_emulator
from burst_agent.rescale.emulator.store import FileRecord

REPO = Path(__file__).resolve().parents[2]
SITE = Path("/opt/burst-agent/venv")
AGENT = SITE / "bin" / "burst-agent"
SITE_PYTHON = SITE / "bin" / "python"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
SERVICE_USER = "burst-agent"
USER_A, USER_B = "burstuser_a", "burstuser_b"
USER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "the security tests run as root (they switch users with runuser)"
    for user in (USER_A, USER_B, SERVICE_USER):
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            return f"user {user} missing"
    if not AGENT.exists():
        return f"{AGENT} missing"
    return None


@pytest.fixture(scope="session", autouse=True)
def _machine() -> None:
    """These tests never skip: a machine without the users or the site install fails them loudly."""
    problem = _problem()
    if problem:
        pytest.fail(f"{problem}: run `sudo bash .ci/slurm-setup.sh && sudo bash .ci/agent-install.sh`")
    installed = next((SITE / "lib").glob("python3*/site-packages/burst_agent"))
    stale = filecmp.dircmp(REPO / "burst_agent", installed)
    if stale.diff_files or stale.left_only:
        warnings.warn(f"{installed} differs from the repo ({stale.diff_files + stale.left_only}): "
                      "processes run as other users test that copy; rerun .ci/agent-install.sh", stacklevel=1)


def uid(user: str) -> int:
    return int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)


def as_user(user: str, argv: list[str], cwd: Path | str = "/", env: dict[str, str] | None = None,
            timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run argv as `user` with a small fixed environment (like a login shell would give)."""
    return subprocess.run([RUNUSER, "-u", user, "--", *argv], cwd=cwd,
                          env={**USER_ENV, "HOME": "/", **(env or {})},
                          capture_output=True, text=True, timeout=timeout, **kw)


def py_as(user: str, code: str, *args: str, cwd: Path | str = "/") -> subprocess.CompletedProcess[str]:
    """Python code run by the site's interpreter as `user`; argv[1:] are `args`."""
    return as_user(user, [str(SITE_PYTHON), "-c", code, *args], cwd=cwd)


def make_private_dir(parent: Path, user: str, mode: int = 0o755) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{user}-", dir=parent))
    shutil.chown(path, user, user)
    path.chmod(mode)
    return path


def write_as(path: Path, text: str, user: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    shutil.chown(path, user, user)
    path.chmod(mode)
    return path


def inject_output(emulator: EmulatorHandle, remote_job_id: str, relative_path: str, data: bytes,
                  scratch: Path) -> None:
    """Add an output file with an arbitrary (hostile) relativePath to a remote job, as a rogue API would."""
    import hashlib

    scratch.mkdir(parents=True, exist_ok=True)
    payload = scratch / secrets.token_hex(6)
    payload.write_bytes(data)
    store = emulator.store
    with store.lock:
        record = FileRecord(store.new_id(), payload.name, payload, len(data), hashlib.md5(data).hexdigest(),
                            5, relative_path, relative_path)
        store.add_file(record)
        store.jobs[remote_job_id].output_file_ids.append(record.id)


def remote_job_for(emulator: EmulatorHandle, marker: str) -> Any:
    """The emulated job whose command contains `marker` (e.g. 'SLURM_JOB_ID=9101 '), or None."""
    with emulator.store.lock:
        found = [j for j in emulator.store.jobs.values() if marker in j.analyses[0]["command"]]
    return found[0] if found else None


@pytest.fixture(scope="session")
def shared_dir() -> Iterator[Path]:
    """World-traversable scratch: the test users must reach their workdirs and the spool."""
    path = Path(tempfile.mkdtemp(prefix="burst-security-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if not os.environ.get("BURST_KEEP_TEST_DIRS"):
        shutil.rmtree(path, ignore_errors=True)


def distinctive_token() -> str:
    return f"SEKRIT-{secrets.token_hex(12)}-tok"


@dataclass
class Site:
    """The agent as the systemd unit runs it: user burst-agent, UMask=0027, private state dir."""

    root: Path
    emulator: EmulatorHandle
    token: str
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spool, self.state = self.root / "spool", self.root / "state"
        for path in (self.spool, self.state):
            path.mkdir()
            shutil.chown(path, SERVICE_USER, SERVICE_USER)
        self.state.chmod(0o750)
        self.spool.chmod(0o755)
        self.token_file = self.state / "token"
        write_as(self.token_file, self.token, SERVICE_USER, 0o600)
        self.db = self.state / "state.db"
        self.config = self.root / "agent.yaml"
        self.config.write_text(yaml.safe_dump({
            "api": {"base_url": self.emulator.url, "token_file": str(self.token_file),
                    "backoff_base_s": 0.05, "backoff_max_s": 0.5},
            "agent": {"spool_dir": str(self.spool), "state_db": str(self.db), "poll_interval_s": 5,
                      "cluster_name": "sec", "relay_grace_s": 30},
            "metrics": {"listen_port": 0},
            **self.extra,
        }))
        self.config.chmod(0o644)

    def start(self) -> None:
        self.runs += 1
        log = (self.root / f"agent-{self.runs}.log").open("wb")
        command = f"umask 027; exec {AGENT} run --config {self.config}"
        self.proc = subprocess.Popen([RUNUSER, "-u", SERVICE_USER, "--", "/bin/sh", "-c", command],
                                     stdout=log, stderr=subprocess.STDOUT, cwd="/",
                                     env={**USER_ENV, **self.env})
        wait_until(lambda: self.spool.joinpath("agent.sock").exists() or self.proc.poll() is not None,
                   30, "the agent socket")
        if self.proc.poll() is not None:
            raise AssertionError(f"agent did not start:\n{self.logs()}")

    def stop(self) -> None:
        terminate(self.proc, timeout=30)

    def logs(self) -> str:
        return "".join((self.root / f"agent-{n}.log").read_text() for n in range(1, self.runs + 1))

    def job(self, entry: str) -> dict[str, Any] | None:
        """The job row, read-only (root must never create WAL files the agent cannot open)."""
        if not self.db.exists():
            return None
        conn = sqlite3.connect(f"{self.db.as_uri()}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute("SELECT * FROM jobs WHERE entry = ?", (entry,)).fetchone()
        finally:
            conn.close()
        return dict(row) if row else None

    def wait_terminal(self, entry: str, timeout: float = 90) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.job(entry)
            return job if job and job["state"] in ("done", "failed", "cancelled") else None

        try:
            return wait_until(done, timeout, f"job {entry} to end")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now {self.job(entry)}\n{self.logs()[-3000:]}") from None


@pytest.fixture
def token() -> str:
    return distinctive_token()


@pytest.fixture
def emu(tmp_path, token) -> Iterator[EmulatorHandle]:
    """An emulator with a distinctive token and a request log (tmp_path/emulator/requests.log)."""
    data = tmp_path / "emulator"
    handle = start_emulator(data, token, step_seconds=0.1, stop_grace_seconds=1.0,
                            request_log=tmp_path / "requests.log")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def site(shared_dir, emu, token) -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="site-", dir=shared_dir))
    root.chmod(0o755)
    running = Site(root, emu, token)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def rig(tmp_path, emu) -> Iterator[AgentRig]:
    """The e2e rig (agent as root, direct delivery into root-owned workdirs) on this file's emulator."""
    (tmp_path / "agent").mkdir()
    agent = AgentRig(tmp_path / "agent", emu)
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def workdir_of(shared_dir) -> Callable[[str], Path]:
    return lambda user: make_private_dir(shared_dir, user)


def start_relay(user: str, workdir: Path, spool: Path, script: str, job_id: str) -> subprocess.Popen[bytes]:
    """`burst-agent relay` as `user` in `workdir`, as job_submit.lua starts it (without Slurm).

    Its stdout and stderr go to workdir/slurm-<job_id>.out, opened by the user's shell; the
    Popen's exit status is the relay's (runuser passes it through).
    """
    write_as(workdir / f"job-{job_id}.sh", script, user)
    write_as(workdir / f"request-{job_id}.json", f'{{"workdir": "{workdir}"}}', user)
    command = (f"exec {AGENT} relay --script job-{job_id}.sh --request request-{job_id}.json "
               f"--spool {spool} > slurm-{job_id}.out 2>&1")
    env = {**USER_ENV, "HOME": "/", "SLURM_JOB_ID": job_id, "SLURM_SUBMIT_DIR": str(workdir)}
    return subprocess.Popen([RUNUSER, "-u", user, "--", "/bin/sh", "-c", command], cwd=workdir, env=env,
                            start_new_session=True)


def run_relay(user: str, workdir: Path, spool: Path, script: str, job_id: str,
              timeout: float = 120) -> tuple[int, str]:
    """Run the relay to its end: (exit code, what it wrote to slurm-<job_id>.out)."""
    code = start_relay(user, workdir, spool, script, job_id).wait(timeout=timeout)
    return code, (workdir / f"slurm-{job_id}.out").read_text()
