"""Fixtures for tests against the real one-node Slurm cluster of .ci/slurm-setup.sh (root only)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from burst_agent.rescale.emulator import start_emulator

REPO = Path(__file__).resolve().parents[2]
REPO_LUA = REPO / "deploy" / "slurm" / "job_submit.lua"
INSTALLED_LUA = Path("/etc/slurm/job_submit.lua")
REPO_EPILOG = REPO / "deploy" / "slurm" / "epilog.sh"
INSTALLED_EPILOG = Path("/etc/slurm/burst-epilog.sh")
STUB = Path(__file__).with_name("stub_relay.sh")
USERS = ("burstuser_a", "burstuser_b")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
USER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _cluster_problem() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("sbatch") is None:
        return "sbatch not installed"
    missing = [u for u in USERS if subprocess.run(["id", u], capture_output=True).returncode != 0]
    if missing:
        return f"test users missing: {missing}"
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=20)
    if sinfo.returncode != 0:
        return f"sinfo failed: {sinfo.stderr.strip()}"
    if "rescale" not in sinfo.stdout:
        return f"no rescale partition: {sinfo.stdout.strip()!r}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The cluster must be up: in CI (CI=true) a missing cluster fails; elsewhere the tests skip."""
    problem = _cluster_problem()
    if problem is None:
        return
    message = f"Slurm test cluster unavailable ({problem}): run `sudo bash .ci/slurm-setup.sh` first"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(f"!!! SKIPPING Slurm tests: {message}")


@pytest.fixture(scope="session")
def shared_dir(slurm_cluster) -> Iterator[Path]:
    """A world-traversable directory (the test users must reach the stub and their workdirs)."""
    path = Path(tempfile.mkdtemp(prefix="burst-slurm-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if not os.environ.get("BURST_KEEP_TEST_DIRS"):
        shutil.rmtree(path, ignore_errors=True)


def _with_settings(source: Path, prefix: str, settings: dict[str, str]) -> str:
    """`source` with each setting's line (`prefix` formatted with its name, then the value) replaced."""
    text = source.read_text()
    for name, value in settings.items():
        head = prefix.format(name=name)
        text, n = re.subn(f"^{re.escape(head)}.*$", lambda _m, line=head + value: line, text, count=1,
                          flags=re.M)
        if n != 1:
            raise KeyError(f"no setting {name} in {source}")
    return text


def render_lua(**settings: str) -> str:
    """The repo's job_submit.lua with `local NAME = value` settings replaced (values are Lua source)."""
    return _with_settings(REPO_LUA, "local {name} = ", settings)


def install_epilog(**settings: str) -> None:
    """The repo's epilog.sh with `NAME=value` settings replaced, installed where slurm.conf names it."""
    text = _with_settings(REPO_EPILOG, "{name}=", settings)
    tmp = INSTALLED_EPILOG.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(INSTALLED_EPILOG)


def install_lua(text: str) -> None:
    """Install job_submit.lua; a future mtime makes slurmctld reload it on the next submission."""
    if INSTALLED_LUA.exists() and INSTALLED_LUA.read_text() == text:
        return
    before = INSTALLED_LUA.stat().st_mtime if INSTALLED_LUA.exists() else 0.0
    tmp = INSTALLED_LUA.with_suffix(".lua.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(INSTALLED_LUA)
    future = max(time.time() + 2, before + 1)  # another whole second: slurmctld compares seconds
    os.utime(INSTALLED_LUA, (future, future))


@pytest.fixture(scope="session")
def stub_relay(shared_dir) -> Path:
    path = shared_dir / "stub-relay"
    shutil.copyfile(STUB, path)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def lua_installed(stub_relay) -> Iterator[Callable[..., None]]:
    """The repo's lua installed with the stub as relay; call it with settings to reinstall a variant."""
    original = INSTALLED_LUA.read_text() if INSTALLED_LUA.exists() else None
    defaults = {"BURST_AGENT": json.dumps(str(stub_relay))}

    def _install(**settings: str) -> None:
        install_lua(render_lua(**{**defaults, **settings}))

    _install()
    yield _install
    if original is not None:
        install_lua(original)


@pytest.fixture
def lua_variant(lua_installed) -> Iterator[Callable[..., None]]:
    """Install a settings variant for one test; the session's default is put back afterwards."""
    yield lua_installed
    lua_installed()


@dataclass
class Workdir:
    path: Path
    user: str

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        target.write_text(text)
        shutil.chown(target, self.user, self.user)
        return target

    def relay_record(self, job_id: str, name: str) -> str:
        return (self.path / f"relay-{job_id}" / name).read_text()


def make_workdir(shared_dir: Path, user: str) -> Workdir:
    path = Path(tempfile.mkdtemp(prefix=f"{user}-", dir=shared_dir))
    shutil.chown(path, user, user)
    path.chmod(0o755)
    return Workdir(path, user)


@pytest.fixture
def workdir(shared_dir, lua_installed) -> Workdir:
    """A fresh directory owned by burstuser_a, with the test lua installed."""
    return make_workdir(shared_dir, "burstuser_a")


@pytest.fixture
def workdir_b(shared_dir, lua_installed) -> Workdir:
    return make_workdir(shared_dir, "burstuser_b")


class Cluster:
    """Slurm client helpers for the tests (the `cluster` fixture)."""

    @staticmethod
    def run_as(user: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None):
        """Run a Slurm client command as `user` from `cwd` with a small, fixed environment."""
        return subprocess.run(
            [RUNUSER, "-u", user, "--", *argv],
            cwd=cwd, env={**USER_ENV, "HOME": f"/home/{user}", **(env or {})},
            capture_output=True, text=True, timeout=60,
        )

    def sbatch(self, wd: Workdir, script: str, *options: str, env: dict[str, str] | None = None) -> str:
        """Submit `script` (a file name in wd) as wd's user; return the job id."""
        done = self.run_as(wd.user, ["sbatch", "--parsable", *options, script], wd.path, env)
        if done.returncode != 0:
            raise AssertionError(f"sbatch failed: {done.stderr}")
        return done.stdout.strip().split(";")[0]

    @staticmethod
    def show_job(job_id: str) -> dict[str, str]:
        argv = ["scontrol", "-o", "show", "job", job_id]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if out.returncode != 0 or not out.stdout.strip():
            return {}
        return dict(re.findall(r"(\w[\w/:]*)=(\S*)", out.stdout.splitlines()[0]))

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict[str, str]:
        """Poll scontrol until the job reaches a final state; return its fields."""
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        while time.monotonic() < deadline:
            fields = self.show_job(job_id)
            if fields.get("JobState") in FINAL_STATES:
                return fields
            time.sleep(0.2)
        nodes = subprocess.run(["scontrol", "-o", "show", "node"], capture_output=True, text=True, timeout=20)
        subprocess.run(["scancel", job_id], timeout=20)
        raise AssertionError(f"job {job_id} did not finish in {timeout}s: {fields.get('JobState')}"
                             f" (reason {fields.get('Reason')}); nodes: {nodes.stdout.strip()}")

    @staticmethod
    def wait_idle_node(timeout: float = 120.0) -> None:
        """Cancel what earlier tests left on the node and wait until no job holds or frees a core.

        A non-rescale job needs a whole core, and a cancelled relay's core stays taken while its epilog
        delivers (longer on a busy machine)."""
        subprocess.run(["scancel", "--partition=rescale"], timeout=20)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = subprocess.run(["squeue", "-h", "-t", "RUNNING,COMPLETING,CONFIGURING", "-o", "%i"],
                                  capture_output=True, text=True, timeout=20).stdout.split()
            if not busy:
                return
            time.sleep(0.5)
        raise AssertionError(f"jobs still on the node after {timeout}s: {busy}")

    @staticmethod
    def sacct(job_id: str) -> dict[str, str]:
        """The job's allocation line in the accounting database (empty until slurmdbd has it)."""
        names = ("JobID", "State", "ExitCode", "AllocTRES", "Account", "Comment")  # Comment last: it has '|'
        allocation = () if "." in job_id else ("-X",)  # "41.batch": that step's line
        out = subprocess.run(["sacct", *allocation, "-n", "-P", "-j", job_id, "-o", ",".join(names)],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        return dict(zip(names, out.splitlines()[0].split("|", len(names) - 1), strict=True)) if out else {}

    def wait_sacct(self, job_id: str, phase: str, timeout: float = 120.0) -> dict[str, str]:
        """Wait until sacct has the job ended and its Comment in `phase` ("completed (exit 0)", ...)."""
        deadline = time.monotonic() + timeout
        record: dict[str, str] = {}
        while time.monotonic() < deadline:
            record = self.sacct(job_id)
            if record.get("State", "").split(" ")[0] in FINAL_STATES and \
                    record.get("Comment", "").startswith(f"{phase} |"):
                return record
            time.sleep(0.5)
        raise AssertionError(f"sacct never showed job {job_id} ended in phase {phase!r}: {record}")

    def wait_state(self, job_ids: list[str], state: str, timeout: float = 30.0) -> None:
        """Poll until every job is in `state` at the same time."""
        deadline = time.monotonic() + timeout
        states: list[str | None] = []
        while time.monotonic() < deadline:
            states = [self.show_job(j).get("JobState") for j in job_ids]
            if all(s == state for s in states):
                return
            time.sleep(0.2)
        raise AssertionError(f"jobs {job_ids} never all {state}: {states}")

    @staticmethod
    def wait_file(path: Path, timeout: float = 20.0) -> str:
        """Slurm may mark a job done a moment before its output file is complete."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return path.read_text()
            time.sleep(0.1)
        raise AssertionError(f"{path} never appeared")

    def run_relay_job(self, wd: Workdir, script: str, *options: str, **kw) -> tuple[str, dict[str, str]]:
        """Submit to rescale, wait for the end and for the stub's record; return (job id, fields)."""
        job_id = self.sbatch(wd, script, "--partition=rescale", *options, **kw)
        fields = self.wait_job(job_id)
        self.wait_file(wd.path / f"relay-{job_id}" / "env")
        return job_id, fields


@pytest.fixture
def cluster(lua_installed) -> Cluster:
    lua_installed()  # the stub relay again, should a test with the real agent have run before
    return Cluster()


# -- the whole chain: sbatch as a user -> job_submit.lua -> relay -> agent (as burst-agent) -> emulator

AGENT = Path("/opt/burst-agent/venv/bin/burst-agent")
SERVICE_USER = "burst-agent"
TOKEN = "slurm-e2e-token-5f4e3d2c1b0a"


@dataclass
class Service:
    """The agent as the site runs it; `restart()` stops and starts it like systemctl restart."""

    root: Path
    config: Path
    spool: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: int = field(default=0)
    plug_in: Callable[[], object] = field(default=lambda: None)  # the lua and epilog pointing at it

    def start(self) -> None:
        self.runs += 1
        log = (self.root / f"agent-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [RUNUSER, "-u", SERVICE_USER, "--", str(AGENT), "run", "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, cwd="/",
        )
        deadline = time.monotonic() + 30
        while not self.spool.joinpath("agent.sock").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"agent did not start:\n{self.logs()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return "".join((self.root / f"agent-{n}.log").read_text() for n in range(1, self.runs + 1))


@pytest.fixture(scope="session")
def emulator(slurm_cluster, tmp_path_factory):
    if not AGENT.exists():
        message = f"{AGENT} missing: run `sudo bash .ci/agent-install.sh` first"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(f"!!! SKIPPING: {message}")
    handle = start_emulator(tmp_path_factory.mktemp("emulator"), TOKEN, step_seconds=0.2)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def service(emulator, shared_dir) -> Iterator[Service]:
    """Spool, state and config owned by the service user; the agent running; the lua pointing at it."""
    root = Path(tempfile.mkdtemp(prefix="agent-", dir=shared_dir))
    root.chmod(0o755)
    spool, state = root / "spool", root / "state"
    for path in (spool, state):
        path.mkdir()
        shutil.chown(path, SERVICE_USER, SERVICE_USER)
    state.chmod(0o700)
    token = state / "token"
    token.write_text(TOKEN)
    shutil.chown(token, SERVICE_USER, SERVICE_USER)
    token.chmod(0o600)
    config = root / "agent.yaml"
    config.write_text(yaml.safe_dump({
        # Functional tests, not benchmarks: the submission budget is lifted so 50 jobs need not wait
        # 5 minutes for Rescale's 1,000/h (docs/benchmarks.md measures under the real budgets).
        "api": {"base_url": emulator.url, "token_file": str(token),
                "rate_limits": {"job_submission_per_hour": 36000}},
        "translate": {"gpu_coretypes": {"gpu-tesla": 0.125}},
        "agent": {"spool_dir": str(spool), "state_db": str(state / "state.db"), "poll_interval_s": 5,
                  "cluster_name": "ci", "relay_grace_s": 10},
        "metrics": {"listen_port": 0},
    }))
    service = Service(root, config, spool)
    service.start()
    original = INSTALLED_LUA.read_text() if INSTALLED_LUA.exists() else None
    service.plug_in = lambda: (
        install_lua(render_lua(BURST_AGENT=json.dumps(str(AGENT)), SPOOL_DIR=json.dumps(str(spool)))),
        install_epilog(BURST_AGENT=str(AGENT), SPOOL_DIR=str(spool)))
    service.plug_in()
    yield service
    service.stop()
    install_epilog()
    if original is not None:
        install_lua(original)


@pytest.fixture
def user_a(service, shared_dir) -> Workdir:
    return make_workdir(shared_dir, "burstuser_a")


@pytest.fixture
def user_b(service, shared_dir) -> Workdir:
    return make_workdir(shared_dir, "burstuser_b")


@pytest.fixture
def slurm(service) -> Cluster:
    service.plug_in()  # the real relay again, should a stub-relay test have run in between
    return Cluster()
