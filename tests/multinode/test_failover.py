"""Active/standby agents on the multi-node rig: two agents share one PostgreSQL database and the rig's
spool, each with its own TCP listener, and the relays on n1 and n2 know both addresses. The leader is
killed (kill -9) while a job runs on each node: the standby leads within 10 s and the relays go on with
it. Then the new leader is paused (SIGSTOP) past its lease: the first agent, restarted as systemd would,
leads again; the paused one, resumed, steps down (exit 75) without a single API call that changes
anything. Both jobs complete as users expect, with their whole logs, on one remote job each."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from conftest import SERVICE_USER, Service, agent_config, fresh_spool, tcp_sockets
from pgkit import raw_rows, server
from test_cancel_delivery import TICKS, _delivered, _printing
from test_relay_e2e import remote_jobs
from waiting import wait_until

from burst_agent.leadership import EXIT_DEPOSED
from burst_agent.stores import open_store

LISTENERS = (("10.77.0.1", 7561), ("10.77.0.1", 7562))  # one per agent, as on two hosts
TICK_COUNT = 250  # 0.2 s each: the remote jobs print past both failovers
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def _agent_url(root: Path) -> str:
    """A fresh database's URL with a passfile the service user can read (the CI one is root's)."""
    url = urlsplit(server().new_database())
    query = dict(parse_qsl(url.query))
    if "passfile" in query:
        own = root / "pgpass"
        shutil.copyfile(query["passfile"], own)
        shutil.chown(own, SERVICE_USER, SERVICE_USER)
        own.chmod(0o600)
        query["passfile"] = str(own)
    return urlunsplit(url._replace(query=urlencode(query)))


@pytest.fixture
def pair(service, emulator, shared_dir) -> Iterator[tuple[Service, Service, str]]:
    """The session's agent stopped; two agents on one new database and a fresh spool; the session's
    agent back afterwards, on a fresh spool and state of its own."""
    service.stop()
    agents, url, spool = [], "", fresh_spool()
    for n, listen in enumerate(LISTENERS):
        root = Path(tempfile.mkdtemp(prefix=f"ha-{n}-", dir=shared_dir))
        root.chmod(0o755)
        url = url or _agent_url(root)
        agents.append(Service(root, agent_config(root, emulator, url, listen), spool))
    open_store(url).close()  # the schema, so that the test reads the lease from the start
    (spool / "agents").write_text("".join("{}:{}\n".format(*listen) for listen in LISTENERS))
    (spool / "agents").chmod(0o644)
    try:
        yield agents[0], agents[1], url
    finally:
        for agent in agents:
            if agent.proc is not None and agent.proc.poll() is None:
                with contextlib.suppress(IndexError, ProcessLookupError):  # no child: runuser alone
                    resume(agent)
            agent.stop()
        fresh_spool()
        for leftover in (service.root / "state").glob("state.db*"):
            leftover.unlink()
        service.start()


def agent_pid(agent: Service) -> int:
    """The agent's own pid (the Service's process is runuser, its parent)."""
    assert agent.proc is not None
    children = Path(f"/proc/{agent.proc.pid}/task/{agent.proc.pid}/children").read_text().split()
    return int(children[0])


def resume(agent: Service, pid: int | None = None) -> None:
    """SIGCONT to the agent and to its runuser, which stops itself when its child is stopped (su does)."""
    assert agent.proc is not None
    os.kill(pid or agent_pid(agent), signal.SIGCONT)
    os.kill(agent.proc.pid, signal.SIGCONT)


def leads(agent: Service, url: str) -> bool:
    rows = raw_rows(url, "SELECT holder FROM agent_leader WHERE expires_at > now()")
    return agent.proc is not None and [r[0].rsplit(":", 1)[1] for r in rows] == [str(agent_pid(agent))]


def wait_leads(agent: Service, url: str, timeout: float) -> float:
    started = time.monotonic()
    wait_until(lambda: leads(agent, url), timeout, "the agent to lead", interval=0.05)
    return time.monotonic() - started


def new_sockets(before: set[tuple[str, str]], listen: tuple[str, int]) -> set[str]:
    """The nodes whose relays opened a socket to `listen` since `before` was taken."""
    return {node for node, _ in tcp_sockets(listen) - before}


def test_leader_killed_then_paused_both_jobs_complete_once_and_the_paused_one_changes_nothing(
        pair, slurm, user_a, user_b, emulator, emulator_requests):
    first, second, url = pair
    first.start()
    wait_leads(first, url, 30)
    second.start()  # a standby: no listener, no socket of its own until it leads
    job_ids = []
    for wd, other in ((user_a, "n2"), (user_b, "n1")):
        wd.write("job.sh", TICKS.format(directives="").replace("seq 1 900", f"seq 1 {TICK_COUNT}"))
        job_ids.append(slurm.sbatch(wd, "job.sh", "--partition=rescale", f"--exclude={other}"))
    for job_id in job_ids:
        _printing(emulator, job_id)

    os.kill(agent_pid(first), signal.SIGKILL)
    killed = wait_leads(second, url, 15)
    print(f"\ntakeover after kill -9: {killed:.2f} s")
    assert killed <= 10
    first.start()  # as systemd's Restart= would: it stands by
    wait_until(lambda: new_sockets(set(), LISTENERS[1]) == {"n1", "n2"}, 60, "both relays on the new leader")

    paused = agent_pid(second)
    os.kill(paused, signal.SIGSTOP)  # past its lease: it does not know it was deposed
    stopped = wait_leads(first, url, 15)
    print(f"takeover after SIGSTOP: {stopped:.2f} s")
    assert stopped <= 10
    time.sleep(1.0)
    os.kill(agent_pid(first), signal.SIGSTOP)  # so that every request from now on is the paused one's
    time.sleep(1.0)  # the leader's requests in flight are answered (and logged) meanwhile
    log = emulator_requests
    mark = len(log.read_text().splitlines())
    resume(second, paused)
    second.proc.wait(timeout=10)
    woken = [json.loads(line) for line in log.read_text().splitlines()[mark:]]
    before = tcp_sockets(LISTENERS[0])
    resume(first)
    assert second.proc.returncode == EXIT_DEPOSED and "stepping down" in second.logs()
    assert [(r["method"], r["path"]) for r in woken if r["method"] in CHANGES] == []

    for wd, job_id, node in zip((user_a, user_b), job_ids, ("n1", "n2"), strict=True):
        fields = slurm.wait_job(job_id, timeout=240)
        assert (fields["JobState"], fields["ExitCode"], fields["NodeList"]) == ("COMPLETED", "0:0", node)
        _delivered(wd, job_id, emulator)  # the whole remote log, each tick once, and partial.txt
        assert (wd.path / "partial.txt").read_text() == f"{TICK_COUNT}\n"
        assert len(remote_jobs(emulator, job_id)) == 1
    assert new_sockets(before, LISTENERS[0]) == {"n1", "n2"}  # both relays back on the first agent
