"""Active/standby agents on one PostgreSQL database (issue 15): the leader killed mid-run, the standby
takes over within 10 s and finishes every job, no remote job twice; a paused leader that wakes up after
the takeover makes no API call that changes anything, and steps down."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from pgkit import raw_rows, server
from rig import AgentRig
from waiting import wait_until

from burst_agent.leadership import EXIT_DEPOSED
from burst_agent.lifecycle import JobState
from burst_agent.rescale.emulator import EmulatorHandle, start_emulator
from burst_agent.stores import open_store

TOKEN = "emulator-failover-token-0123456789"
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}
KEY = re.compile(r"\[([^\]]+)\]$")  # a remote job's name ends with its reconcile key


@pytest.fixture
def emulator(tmp_path) -> Iterator[EmulatorHandle]:
    """The conftest's emulator, keeping a request log (one JSON line per request)."""
    handle = start_emulator(tmp_path / "emulator", TOKEN, step_seconds=0.05, stop_grace_seconds=1.0,
                            request_log=tmp_path / "requests.jsonl")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def pair(tmp_path, emulator) -> Iterator[tuple[AgentRig, AgentRig]]:
    """Two agents on one PostgreSQL database and one spool (shared storage, as two hosts would have)."""
    state = server().new_database()
    open_store(state).close()  # the schema, so that the test can read the lease from the start
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = AgentRig(tmp_path / "a", emulator, state=state)
    second = AgentRig(tmp_path / "b", emulator, state=state,
                      extra_config={"agent": {"spool_dir": str(first.spool.root)}})
    try:
        yield first, second
    finally:
        for agent in (first, second):
            if agent.proc is not None and agent.proc.poll() is None:
                os.kill(agent.proc.pid, signal.SIGCONT)
            agent.stop()


def holder(agent: AgentRig) -> str:
    assert agent.proc is not None
    return f"{socket.gethostname()}:{agent.proc.pid}"


def wait_leads(agent: AgentRig, timeout: float) -> float:
    """Seconds until `agent` holds an unexpired lease (looked at every 20 ms)."""
    started = time.monotonic()
    sql = "SELECT holder FROM agent_leader WHERE expires_at > now()"
    wait_until(lambda: raw_rows(agent.state, sql) == [(holder(agent),)], timeout, f"{holder(agent)} to lead",
               interval=0.02)
    return time.monotonic() - started


def last_start(agent: AgentRig) -> float:
    """When the agent that led last started work (its clock: time.time())."""
    return float(raw_rows(agent.state, "SELECT value FROM agent_meta WHERE key = 'last_start'")[0][0])


def start_pair(first: AgentRig, second: AgentRig) -> None:
    first.start()
    wait_leads(first, 30)
    second.start()  # a standby: it waits for the lease


def submit(agent: AgentRig, n: int, seconds: int) -> tuple[str, object]:
    work = agent.workdir(f"j{n}")
    return agent.submit(f"#!/bin/bash\nsleep {seconds}\necho {n} > out.txt\n", work, job_id=str(n)), work


def assert_all_done_once(agent: AgentRig, submitted: list[tuple[str, object]]) -> None:
    """Every job DONE with exit 0 and its output, each on exactly one remote job."""
    jobs = [agent.wait_terminal(entry, timeout=120) for entry, _work in submitted]
    assert [(j.state, j.result.exit_code) for j in jobs] == [(JobState.DONE, 0)] * len(jobs)
    assert [(work / "out.txt").read_text() for _entry, work in submitted] == \
        [f"{n}\n" for n in range(len(submitted))]
    remote = list(agent.emulator.store.jobs.values())
    keys = Counter(KEY.search(job.name).group(1) for job in remote)
    assert len(remote) == len(jobs) and set(keys.values()) == {1}, keys  # no remote job twice
    assert {j.remote_job_id for j in jobs} == {job.id for job in remote}


def test_the_leader_killed_mid_run_the_standby_takes_over_within_10_s_and_finishes_every_job(pair):
    first, second = pair
    start_pair(first, second)
    submitted = [submit(first, n, 10) for n in range(4)]
    for entry, _work in submitted:
        first.wait_job(entry, lambda j: j.state is JobState.RUNNING, timeout=60, what="running remotely")
    submitted += [submit(first, n, 1) for n in (4, 5)]  # arriving as the leader dies
    started = last_start(first)
    first.proc.kill()  # kill -9: no lease released, nothing cleaned up
    killed_at = time.time()
    took_over = wait_leads(second, 15)
    first_step = wait_until(lambda: last_start(second) != started and last_start(second), 5,
                            "the new leader's start")  # its first write: what it recovered
    print(f"\ntakeover: lease taken {took_over:.2f} s, first step {first_step - killed_at:.2f} s after kill")
    assert took_over <= 10 and first_step - killed_at <= 10
    assert_all_done_once(first, submitted)


def test_a_paused_leader_resumed_after_the_takeover_changes_nothing_and_steps_down(pair, tmp_path):
    first, second = pair
    start_pair(first, second)
    submitted = [submit(first, n, 8) for n in range(3)]
    for entry, _work in submitted:
        first.wait_job(entry, lambda j: j.remote_job_id is not None, timeout=60, what="a remote job")
    os.kill(first.proc.pid, signal.SIGSTOP)  # past its lease: it does not know it was deposed
    took_over = wait_leads(second, 15)
    print(f"\ntakeover after SIGSTOP: {took_over:.2f} s")
    assert took_over <= 10
    submitted.append(submit(first, 3, 1))  # the new leader works: it creates this one
    first.wait_job(submitted[-1][0], lambda j: j.remote_job_id is not None, timeout=30, what="a remote job")
    os.kill(second.proc.pid, signal.SIGSTOP)  # so that every request from now on is the old leader's
    time.sleep(1.0)  # the new leader's requests in flight are answered (and logged) meanwhile
    log = tmp_path / "requests.jsonl"
    mark = len(log.read_text().splitlines())
    submitted.append(submit(first, 4, 1))  # work the old leader would take at once if it still led
    os.kill(first.proc.pid, signal.SIGCONT)
    assert first.wait_exit(timeout=10) == EXIT_DEPOSED
    time.sleep(0.5)
    woken = [json.loads(line) for line in log.read_text().splitlines()[mark:]]
    os.kill(second.proc.pid, signal.SIGCONT)
    assert [(r["method"], r["path"]) for r in woken if r["method"] in CHANGES] == []
    assert "stepping down" in first.logs()
    assert_all_done_once(first, submitted)


def test_an_entry_claimed_by_a_leader_that_stepped_down_before_recording_it_still_runs(rig):
    from burst_agent.agent import RECLAIM_S

    rig.start()
    first = submit(rig, 0, 0)
    rig.wait_terminal(first[0])  # running, its start-up recovery long done
    os.kill(rig.proc.pid, signal.SIGSTOP)
    late = submit(rig, 1, 0)
    rig.spool.claim(late[0])  # what a deposed leader does in the instant before it steps down
    os.kill(rig.proc.pid, signal.SIGCONT)
    job = rig.wait_terminal(late[0], timeout=RECLAIM_S + 30)
    assert (job.state, job.result.exit_code, (late[1] / "out.txt").read_text()) == (JobState.DONE, 0, "1\n")
