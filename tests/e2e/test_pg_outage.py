"""PostgreSQL stopped for 30 s mid-run (issue 15): the agents step down and wait, as systemd would
restart them, no job fails, and once the database is back an agent leads again and every job
completes once, with its output."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from pgkit import SETUP, PostgresServer, _start_cluster, _stop_cluster
from rig import AgentRig
from test_active_standby import assert_all_done_once, emulator, start_pair, submit  # noqa: F401
from waiting import wait_until

from burst_agent.stores import open_store

OUTAGE_S = 30


def _free_port(low: int, high: int) -> int:
    for port in range(low + os.getpid() % 1000, high):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {low}-{high}")


@pytest.fixture
def private_postgres() -> Iterator[tuple[PostgresServer, dict[str, str]]]:
    """A cluster of this test's own (stopping it disturbs no other test), on a port below the ephemeral
    range, so that no outgoing connection takes it while the server is down."""
    dsn, env = _start_cluster(_free_port(20000, 32000))
    try:
        yield PostgresServer(dsn), env
    finally:
        _stop_cluster(env)


def test_postgresql_down_for_30_s_mid_run_fails_no_job(tmp_path, emulator, private_postgres):  # noqa: F811
    server, env = private_postgres
    state = server.new_database()
    open_store(state).close()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = AgentRig(tmp_path / "a", emulator, state=state)
    second = AgentRig(tmp_path / "b", emulator, state=state,
                      extra_config={"agent": {"spool_dir": str(first.spool.root)}})
    try:
        start_pair(first, second)
        submitted = [submit(first, n, 6) for n in range(4)]
        wait_until(lambda: all(first.job(entry) and first.job(entry).remote_job_id for entry, _ in submitted),
                   60, "every job created on Rescale")
        subprocess.run(["bash", str(SETUP), "stop"], env=env, check=True, capture_output=True, timeout=60)
        time.sleep(OUTAGE_S)  # meanwhile the remote jobs finish on Rescale
        subprocess.run(["bash", str(SETUP)], env=env, check=True, capture_output=True, timeout=60)
        for agent in (first, second):  # systemd's Restart=on-failure, for an agent that stepped down
            if agent.proc is not None and agent.proc.poll() is not None:
                agent.start()
        assert_all_done_once(first, submitted)
    finally:
        for agent in (first, second):
            if agent.proc is not None and agent.proc.poll() is None:
                os.kill(agent.proc.pid, signal.SIGCONT)
            agent.stop()
