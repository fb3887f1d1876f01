"""The API token appears in no artefact of a full run, and a loosely protected token file is refused."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from conftest import (
    AGENT,
    SERVICE_USER,
    USER_A,
    as_user,
    make_private_dir,
    remote_job_for,
    start_relay,
    write_as,
)
from rig import wait_until

READ_CAP = 64 * 1024 * 1024


def _files(root: Path) -> list[Path]:
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(path)
    return found


def _reachable_by_all(path: Path) -> bool:
    """World-readable, in directories everybody may traverse."""
    if not os.lstat(path).st_mode & stat.S_IROTH:
        return False
    return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in path.parents)


def _new_world_readable_tmp_files(since: float) -> list[Path]:
    found = []
    for dirpath, dirs, names in os.walk("/tmp"):
        dirs[:] = [d for d in dirs if os.stat(os.path.join(dirpath, d)).st_mode & stat.S_IXOTH]
        for name in names:
            path = Path(dirpath) / name
            try:
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and st.st_mtime >= since and _reachable_by_all(path):
                    found.append(path)
            except OSError:
                continue
    return found


def _holding(token: str, paths: list[Path]) -> list[str]:
    leaks = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                if token.encode() in handle.read(READ_CAP):
                    leaks.append(str(path))
        except OSError:
            continue
    return leaks


def _metrics_text(logs: str) -> str:
    port = next(json.loads(line)["port"] for line in logs.splitlines() if '"metrics endpoint up"' in line)
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_the_token_is_in_no_artefact_of_a_full_run(site, shared_dir, emu, token, tmp_path):
    started = time.time() - 1
    work = make_private_dir(shared_dir, USER_A)
    write_as(work / "in.txt", "input\n", USER_A)
    relays = {
        "9401": start_relay(USER_A, work, site.spool, "#!/bin/bash\nenv > env.txt\ncat in.txt\n", "9401"),
        "9402": start_relay(USER_A, work, site.spool, "#!/bin/bash\necho failing\nexit 3\n", "9402"),
        "9403": start_relay(USER_A, work, site.spool, "#!/bin/bash\necho long\nsleep 120\n", "9403"),
    }
    try:
        wait_until(lambda: (j := remote_job_for(emu, "SLURM_JOB_ID=9403 ")) and j.status == "Executing", 60,
                   "the long job executing")
        os.killpg(relays["9403"].pid, signal.SIGTERM)  # like scancel: the relay asks for the remote stop
        codes = {job_id: relay.wait(timeout=120) for job_id, relay in relays.items()}
    finally:
        for relay in relays.values():
            if relay.poll() is None:
                relay.kill()
    assert (codes["9401"], codes["9402"]) == (0, 3), codes
    env_txt = (work / "env.txt").read_text()
    assert "SLURM_JOB_ID=9401" in env_txt  # the remote environment did come back
    status = as_user(SERVICE_USER, [str(AGENT), "status", "--all", "--json", "--config", str(site.config)])
    assert status.returncode == 0 and len(json.loads(status.stdout)) == 3, status.stderr
    texts = {
        "agent log": site.logs(), "status --json": status.stdout + status.stderr,
        "metrics": _metrics_text(site.logs()), "remote env.txt": env_txt,
        "agent cmdline": Path(f"/proc/{site.proc.pid}/cmdline").read_bytes().decode(errors="replace"),
    }
    leaks = [what for what, text in texts.items() if token in text]
    request_log = (tmp_path / "requests.log").read_text()
    assert request_log.count("\n") > 10, "the emulator request log recorded nothing"
    assert "Authorization" not in request_log and "Token " not in request_log, "the request log keeps auth"
    files = [p for p in _files(site.root) if p != site.token_file]
    files += _files(work) + _files(tmp_path / "emulator") + [tmp_path / "requests.log"]
    leaks += _holding(token, files)
    leaks += _holding(token, _new_world_readable_tmp_files(started))
    assert not leaks, f"the API token leaked into: {leaks}"
    assert site.db.exists() and any(p.name == "state.db" for p in files)


def test_a_token_in_the_agent_environment_never_reaches_the_job(rig, monkeypatch):
    config = yaml.safe_load(rig.config_path.read_text())
    del config["api"]["token_file"]
    rig.config_path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("RESCALE_API_TOKEN", rig.emulator.token)
    work = rig.workdir("envjob")
    rig.start()
    job = rig.wait_terminal(rig.submit("#!/bin/bash\nenv > env.txt\n", work, job_id="9410"))
    assert job.result.exit_code == 0, job
    env_txt = (work / "env.txt").read_text()
    assert "SLURM_JOB_ID=9410" in env_txt
    assert rig.emulator.token not in env_txt and "RESCALE_API_TOKEN" not in env_txt
    assert rig.emulator.token not in rig.logs()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_loosely_protected_token_file_is_refused(tmp_path, emu, mode):
    token_file = tmp_path / "token"
    token_file.write_text(emu.token)
    token_file.chmod(mode)
    spool = tmp_path / "spool"
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "api": {"base_url": emu.url, "token_file": str(token_file)},
        "agent": {"spool_dir": str(spool), "state_db": str(tmp_path / "state.db")},
        "metrics": {"listen_port": 0},
    }))
    cli = [sys.executable, "-m", "burst_agent.cli"]
    try:
        run = subprocess.run([*cli, "run", "--config", str(config)], capture_output=True, text=True,
                             timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the agent started with a token file of mode {mode:04o}")
    said = run.stdout + run.stderr
    assert run.returncode != 0, said
    assert f"mode {mode:04o}" in said and f"chmod 600 {token_file}" in said, said
    assert "Traceback" not in said and emu.token not in said
    assert not (spool / "agent.sock").exists() and "agent running" not in said
    doctor = subprocess.run([*cli, "doctor", "--config", str(config)], capture_output=True, text=True,
                            timeout=120)
    report = doctor.stdout + doctor.stderr
    assert doctor.returncode != 0 and f"chmod 600 {token_file}" in report, report
    assert emu.token not in report
