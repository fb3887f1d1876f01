"""Fixtures for the multi-node Slurm rig of .ci/multinode-setup.sh (root only): its cluster `multi`,
one slurmd per network namespace, an agent for it as the service user, the in-process emulator.

The Slurm helpers come from tests/slurm/conftest.py, loaded under another module name (both are
`conftest`); its fixtures are not imported, only its classes and constants."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from waiting import wait_until

from burst_agent.rescale.emulator import start_emulator

REPO = Path(__file__).resolve().parents[2]
SLURM_TESTS = REPO / "tests" / "slurm"
SETUP = REPO / ".ci" / "multinode-setup.sh"
CONF = "/etc/slurm-multi/slurm.conf"
SPOOL = Path("/var/spool/burst-multi")  # the spool the rig's job_submit.lua and epilog name
NODES = ("n1", "n2")
# The agent's TCP listener for relays (MUNGE): the rig's controller address, which every node's
# namespace routes to; relays use it when <spool>/agents names it.
TCP_AGENT = ("10.77.0.1", 7557)
UP_STATES = ("idle", "mixed", "allocated")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_slurm = _load("slurm_conftest", SLURM_TESTS / "conftest.py")
# tests/slurm's helpers import `from conftest import AGENT, RUNUSER, USER_ENV`: this module serves them.
AGENT, RUNUSER, USER_ENV, SERVICE_USER, TOKEN = (_slurm.AGENT, _slurm.RUNUSER, _slurm.USER_ENV,
                                                 _slurm.SERVICE_USER, _slurm.TOKEN)
Service, Workdir, make_workdir = _slurm.Service, _slurm.Workdir, _slurm.make_workdir
sys.path.append(str(SLURM_TESTS))  # test_cancel_delivery's log and output checks


class MultiCluster(_slurm.Cluster):
    """tests/slurm's client helpers, every command aimed at the cluster `multi`."""

    @staticmethod
    def run_as(user: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None):
        return _slurm.Cluster.run_as(user, argv, cwd, {"SLURM_CONF": CONF, **(env or {})})

    @staticmethod
    def node_state(node: str) -> str:
        done = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"], capture_output=True, text=True,
                              timeout=20)
        return done.stdout.split("\n")[0].strip().rstrip("*~#%$@^-")

    @staticmethod
    def rig(*argv: str) -> None:
        """.ci/multinode-setup.sh with these arguments (kill-node NODE, start-node NODE)."""
        done = subprocess.run(["bash", str(SETUP), *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"multinode-setup {' '.join(argv)}: {done.stdout}{done.stderr}"

    def bring_up(self, node: str, timeout: float = 60.0) -> None:
        """Start the node's slurmd unless it runs; wait until Slurm has it back in service."""
        self.rig("start-node", node)
        wait_until(lambda: self.node_state(node) in UP_STATES, timeout, f"node {node} up",
                   interval=0.5)


def _rig_problem() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if not Path(CONF).exists():
        return f"{CONF} missing"
    sinfo = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=20,
                           env={**os.environ, "SLURM_CONF": CONF})
    if sinfo.returncode != 0:
        return f"sinfo failed: {sinfo.stderr.strip()}"
    listed = dict(line.split() for line in sinfo.stdout.splitlines() if line.strip())
    missing = [n for n in NODES if n not in listed]
    return f"nodes missing: {missing} ({sinfo.stdout.strip()!r})" if missing else None


@pytest.fixture(scope="session")
def multi_rig() -> Iterator[None]:
    """The rig must be up (in CI a missing rig fails); Slurm's commands here all talk to `multi`."""
    problem = _rig_problem()
    if problem is not None:
        message = f"multi-node rig unavailable ({problem}): run `sudo bash .ci/multinode-setup.sh` first"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(f"!!! SKIPPING: {message}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", CONF)  # the agent inherits it too: its orphan check asks squeue
        yield


@pytest.fixture(autouse=True)
def _no_real_slurm(multi_rig) -> None:
    """Overrides tests/conftest.py's stubs: these tests use the real Slurm, the rig's cluster only."""


@pytest.fixture(scope="session")
def shared_dir(multi_rig) -> Iterator[Path]:
    """A world-traversable directory for the users' workdirs and the agent's state."""
    path = Path(tempfile.mkdtemp(prefix="burst-multi-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if not os.environ.get("BURST_KEEP_TEST_DIRS"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def emulator(multi_rig, tmp_path_factory):
    if not AGENT.exists():
        message = f"{AGENT} missing: run `sudo bash .ci/agent-install.sh` first"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(f"!!! SKIPPING: {message}")
    handle = start_emulator(tmp_path_factory.getbasetemp() / "emulator", TOKEN, step_seconds=0.2,
                            request_log=_requests(tmp_path_factory))
    yield handle
    handle.stop()


def _requests(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "emulator-requests.jsonl"


@pytest.fixture(scope="session")
def emulator_requests(emulator, tmp_path_factory) -> Path:
    """The emulator's request log, a JSON line per request: which calls a deposed leader made."""
    return _requests(tmp_path_factory)


def _fresh_dir(path: Path, mode: int) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    shutil.chown(path, SERVICE_USER, SERVICE_USER)
    path.chmod(mode)
    return path


def agent_config(root: Path, emulator, state: str, listen: tuple[str, int], **agent: object) -> Path:
    """An agent's config under `root` for the rig's spool: its own token file, `state` (a SQLite path
    or a PostgreSQL URL), relays over TCP at `listen`."""
    token = _fresh_dir(root / "secrets", 0o700) / "token"
    token.write_text(TOKEN)
    shutil.chown(token, SERVICE_USER, SERVICE_USER)
    token.chmod(0o600)
    config = root / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "api": {"base_url": emulator.url, "token_file": str(token),
                "rate_limits": {"job_submission_per_hour": 36000}},
        "agent": {"spool_dir": str(SPOOL), "state_db": state, "poll_interval_s": 5,
                  "cluster_name": "multi", "relay_grace_s": 10,
                  "relay_tcp_listen": "{}:{}".format(*listen), **agent},
        "metrics": {"listen_port": 0},
    }))
    return config


def fresh_spool() -> Path:
    """The rig's spool, emptied: a new agent (or pair) must not find another's entries."""
    return _fresh_dir(SPOOL, 0o755)


@pytest.fixture(scope="session")
def service(emulator, shared_dir) -> Iterator[Service]:
    """The rig's agent as the service user: a fresh spool where the rig's plugin points, its own state."""
    root = Path(tempfile.mkdtemp(prefix="agent-", dir=shared_dir))
    root.chmod(0o755)
    state = _fresh_dir(root / "state", 0o700)
    service = Service(root, agent_config(root, emulator, str(state / "state.db"), TCP_AGENT), fresh_spool())
    service.start()
    yield service
    # What a failed test left running would hold n1's cores and talk to the next session's agent.
    subprocess.run(["scancel", "--partition=rescale"], env={**os.environ, "SLURM_CONF": CONF}, timeout=20)
    service.stop()


@pytest.fixture
def slurm(service) -> Iterator[MultiCluster]:
    """The rig's cluster with every node in service before the test (and after it)."""
    cluster = MultiCluster()
    for node in NODES:
        cluster.bring_up(node)
    yield cluster
    for node in NODES:
        cluster.bring_up(node)


def tcp_sockets(listener: tuple[str, int] = TCP_AGENT) -> set[tuple[str, str]]:
    """(node, socket) for each TCP socket between a node and an agent's listener: open, or in TIME_WAIT
    for a minute after a relay's request, on the agent's side or in the node's namespace."""
    agent = "{}:{}".format(*listener)
    found = set()
    for i, node in enumerate(NODES, start=1):
        for where in ([], ["nsenter", f"--net=/run/netns/burst-{node}"]):
            out = subprocess.run([*where, "ss", "-Htan"], capture_output=True, text=True, timeout=20).stdout
            found |= {(node, " ".join(line.split()[3:5])) for line in out.splitlines()
                      if agent in line and f" 10.77.{i}.2:" in line}
    return found


@pytest.fixture(params=["unix", "tcp"])
def transport(request, service) -> Iterator[str]:
    """How relays reach the agent: agent.sock by its path (paths cross network namespaces), or TCP with
    MUNGE to the agent's listener, which <spool>/agents names (as relays on other hosts do)."""
    agents = service.spool / "agents"
    if request.param == "tcp":
        agents.write_text("{}:{}\n".format(*TCP_AGENT))
        agents.chmod(0o644)
    yield request.param
    wait_until(lambda: not _deliveries(), 60, "the epilogs' deliveries to end", interval=0.2)
    agents.unlink(missing_ok=True)


def _deliveries() -> list[str]:
    """Pids of `burst-agent deliver` (started by the epilog when a job ends) in the nodes' namespaces."""
    pids = []
    for node in NODES:
        listed = subprocess.run(["ip", "netns", "pids", f"burst-{node}"], capture_output=True, text=True,
                                timeout=20).stdout.split()
        pids += [pid for pid in listed if b"deliver" in _cmdline(pid)]
    return pids


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.fixture
def user_a(service, shared_dir) -> Workdir:
    return make_workdir(shared_dir, "burstuser_a")


@pytest.fixture
def user_b(service, shared_dir) -> Workdir:
    return make_workdir(shared_dir, "burstuser_b")
