"""Relays over TCP with the real munged: a whole job through `relay --agent`, forged and replayed requests
refused, and another uid (munged's word, `munge -U` as root) that can neither see nor cancel a job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rig import AgentRig
from waiting import wait_until

from burst_agent.config import StagingConfig
from burst_agent.lifecycle import JobState
from burst_agent.mungeauth import encode as munge
from burst_agent.mungeauth import payload_for
from burst_agent.relay import prepare_inputs
from burst_agent.relayaddr import AgentAddress
from burst_agent.relaynet import TcpAgents, frame
from burst_agent.relayproto import encode
from burst_agent.spool import submit_entry

JOB = """#!/bin/bash
#SBATCH -J over-tcp
echo "remote log over tcp"
mkdir -p res && echo "made remotely" > res/out.txt && head -c 300000 /dev/urandom > big.bin
exit 3
"""
USER_A, USER_B = 1001, 1002


@pytest.fixture
def tcp_rig(tmp_path, emulator) -> Any:
    (tmp_path / "agent").mkdir()
    rig = AgentRig(tmp_path / "agent", emulator, extra_config={"agent": {"relay_tcp_listen": "127.0.0.1:0"}})
    try:
        yield rig
    finally:
        rig.stop()


def _port(rig: AgentRig) -> int:
    def port() -> int | None:
        lines = [line for line in rig.logs().splitlines() if '"relay TCP listener up"' in line]
        return json.loads(lines[0])["port"] if lines else None

    return wait_until(port, 30, "the relay TCP listener")


def _munge_as(uid: int) -> Callable[[str], bytes]:
    """A credential munged for `uid` (only root may choose the uid: `munge -U`)."""
    def make(payload: str) -> bytes:
        done = subprocess.run(["munge", "-U", str(uid), "-G", str(uid), "-t", "60"], input=payload.encode(),
                              capture_output=True, check=True, timeout=10)
        return done.stdout.strip()

    return make


def _send(port: int, data: bytes) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(data)
        return json.loads(conn.makefile("rb").readline())


def test_a_relay_over_tcp_runs_a_job_with_its_log_and_outputs(tcp_rig):
    work = tcp_rig.workdir("tcp")
    (work / "job.sh").write_text(JOB)
    (work / "request.json").write_text(json.dumps({"workdir": str(work)}))
    tcp_rig.start()
    port = _port(tcp_rig)
    tcp_rig.spool.socket_path.unlink()  # only TCP reaches the agent now
    argv = [sys.executable, "-m", "burst_agent.cli", "relay", "--script", str(work / "job.sh"), "--request",
            str(work / "request.json"), "--spool", str(tcp_rig.spool.root), "--agent", f"127.0.0.1:{port}"]
    relay = subprocess.run(argv, cwd=work, env={"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "91"},
                           capture_output=True, text=True, timeout=120)
    assert relay.returncode == 3, relay.stdout + relay.stderr
    assert "remote log over tcp" in relay.stdout
    assert (work / "res" / "out.txt").read_text() == "made remotely\n"
    remote = next(j for j in tcp_rig.emulator.store.jobs.values() if j.work_dir)
    assert (work / "big.bin").read_bytes() == (Path(remote.work_dir) / "big.bin").read_bytes()
    entry = relay.stdout.split("handed to the agent as ")[1].split()[0]
    assert tcp_rig.job(entry).progress.delivered_at is not None  # the relay said `delivered` over TCP


def test_forged_and_replayed_credentials_are_refused(tcp_rig):
    tcp_rig.start()
    port = _port(tcp_rig)
    line = encode({"op": "jobs", "all": True})[:-1]
    forged = _send(port, frame(munge(payload_for(f"127.0.0.1:{port}", b'{"op":"jobs"}')), line))
    assert forged["refused"] is True and "another request" in forged["error"]
    sent = frame(munge(payload_for(f"127.0.0.1:{port}", line)), line)
    assert _send(port, sent) == {"jobs": [], "not_shown": 0}
    replayed = _send(port, sent)
    assert replayed["refused"] is True and "EMUNGE_CRED_REPLAYED" in replayed["error"]
    wrong_agent = frame(munge(payload_for(f"127.0.0.2:{port}", line)), line)
    assert "another request or another agent" in _send(port, wrong_agent)["error"]
    logs = tcp_rig.logs()
    assert '"kind": "payload"' in logs and '"kind": "replayed"' in logs
    assert sent.split(b"\n")[0].decode() not in logs  # refusals are logged without the credential


def test_another_uid_can_neither_see_nor_cancel_a_job_but_its_owner_can(tcp_rig):
    work = tcp_rig.workdir("owned")
    tcp_rig.start()
    port = _port(tcp_rig)
    script = "#!/bin/bash\necho running\nsleep 300\n"

    def as_user_a(entry_dir: Path) -> None:
        prepare_inputs(entry_dir, work, script, StagingConfig())
        for path in (entry_dir, *entry_dir.iterdir()):
            os.chown(path, USER_A, USER_A)

    entry = submit_entry(tcp_rig.spool, script, {"workdir": str(work), "job_id": "92"}, build=as_user_a)
    job = tcp_rig.wait_job(entry, lambda j: j.remote.status == "Executing", what="remote Executing")
    assert job.owner_uid == USER_A
    address = [AgentAddress("127.0.0.1", port)]
    user_b, user_a = TcpAgents(address, munge=_munge_as(USER_B)), TcpAgents(address, munge=_munge_as(USER_A))
    assert user_b.call({"op": "status", "entry": entry})[0] == {"state": "unknown"}
    assert user_b.call({"op": "jobs", "all": True})[0]["jobs"] == []
    for ref in (entry, job.id, "92"):
        assert user_b.call({"op": "cancel", "job": ref})[0] == {"error": "no such job of yours"}
    assert not tcp_rig.job(entry).terminal
    assert user_a.call({"op": "status", "entry": entry})[0]["state"] == "running"
    assert user_a.call({"op": "cancel", "entry": entry})[0]["id"] == job.id
    assert tcp_rig.wait_terminal(entry).state is JobState.CANCELLED
