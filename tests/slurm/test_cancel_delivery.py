"""scancel and an admin's cancel on the real Slurm: Slurm records CANCELLED, and the user still finds the
partial outputs and the whole remote log in the workdir (from the relay within KillWait, or from the
epilog's `burst-agent deliver` when the outputs take longer). Plain scancel and time limits, many at
once: test_first_week.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from conftest import AGENT, RUNUSER, USER_ENV
from test_relay_e2e import remote_jobs
from waiting import wait_until

TICKS = ("#!/bin/bash\n{directives}for i in $(seq 1 900); do echo tick $i; echo $i > partial.txt; sleep 0.2;"
         " done\n")


def _ticks(text: str) -> list[str]:
    return re.findall(r"tick \d+", text)


def _remote_log(emulator, job_id: str) -> str:
    job = wait_until(lambda: [j for j in remote_jobs(emulator, job_id) if j.status == "Completed"], 90,
                     "the remote job stopped")[0]
    return (Path(job.work_dir) / "process_output.log").read_text()


def _printing(emulator, job_id: str) -> None:
    def started() -> bool:
        jobs = [j for j in remote_jobs(emulator, job_id) if j.work_dir is not None]
        return bool(jobs) and "tick 5" in (Path(jobs[0].work_dir) / "process_output.log").read_text()
    wait_until(started, 90, "the remote job printing")


def _delivered(wd, job_id: str, emulator, timeout: float = 90) -> str:
    """Wait until slurm-N.out holds the whole remote log (each tick once) and partial.txt arrived."""
    remote = _ticks(_remote_log(emulator, job_id))
    out = wd.path / f"slurm-{job_id}.out"
    wait_until(lambda: _ticks(out.read_text()) == remote and (wd.path / "partial.txt").exists(), timeout,
               "the whole log and the partial outputs in the workdir")
    assert (wd.path / "partial.txt").owner() == wd.user
    return out.read_text()


def test_outputs_slower_than_killwait_come_through_the_epilog(slurm, user_a, emulator):
    user_a.write("job.sh", TICKS.format(directives=""))
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    _printing(emulator, job_id)
    emulator.faults.update({"latency_ms": 6000, "methods": ["GET"],
                            "path_pattern": "/api/v2/files/[^/]+/contents/"})
    try:
        assert subprocess.run(["scancel", job_id], timeout=20).returncode == 0
        assert slurm.wait_job(job_id, timeout=60)["JobState"] == "CANCELLED"
        text = _delivered(user_a, job_id, emulator, timeout=180)
    finally:
        emulator.faults.update({"latency_ms": 0, "methods": [], "path_pattern": ""})
    assert "delivering them now" in text


def test_an_admin_cancel_is_recorded_by_slurm_as_cancelled(slurm, user_a, emulator, service):
    user_a.write("job.sh", TICKS.format(directives=""))
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    _printing(emulator, job_id)
    entry = wait_until(lambda: [p.name for p in (service.spool / "claimed").iterdir()], 30, "the entry")[0]
    done = subprocess.run([RUNUSER, "-u", "burst-agent", "--", str(AGENT), "cancel", "--config",
                           str(service.config), entry], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    fields = slurm.wait_job(job_id, timeout=90)
    assert fields["JobState"] == "CANCELLED", fields
    _delivered(user_a, job_id, emulator)


def test_a_user_sees_and_cancels_only_their_own_jobs(slurm, user_a, user_b, emulator, service):
    user_a.write("job.sh", TICKS.format(directives=""))
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    _printing(emulator, job_id)

    def as_user(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RUNUSER, "-u", user, "--", str(AGENT), *argv, "--config", str(service.config)],
                              capture_output=True, text=True, timeout=30, env=USER_ENV, cwd="/tmp")

    mine = as_user("burstuser_a", "status", "--json")
    assert mine.returncode == 0, mine.stderr
    [view] = [v for v in json.loads(mine.stdout) if v["scheduler_job_id"] == job_id]
    assert view["remote_job_id"] and view["hardware"] != "-" and view["owner"] == "burstuser_a"
    theirs = as_user("burstuser_b", "status", "--json")
    assert theirs.returncode == 0 and job_id not in theirs.stdout
    refused = subprocess.run([RUNUSER, "-u", "burstuser_b", "--", str(AGENT), "cancel", job_id, "--config",
                              str(service.config)], capture_output=True, text=True, timeout=30, env=USER_ENV)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    own = subprocess.run([RUNUSER, "-u", "burstuser_a", "--", str(AGENT), "cancel", job_id, "--config",
                          str(service.config)], capture_output=True, text=True, timeout=30, env=USER_ENV)
    assert own.returncode == 0, own.stderr
    assert slurm.wait_job(job_id, timeout=90)["JobState"] == "CANCELLED"
