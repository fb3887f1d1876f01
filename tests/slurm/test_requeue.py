"""Requeue is safe: a burst job requeued by `scontrol requeue`, and by its node going DOWN (a lost
node, as far as one machine can stand in for one), keeps its one remote job; each next run
re-attaches to it, and the job completes with its whole log and its outputs."""

from __future__ import annotations

import subprocess

from test_cancel_delivery import TICKS, _delivered, _printing
from test_relay_e2e import remote_jobs
from waiting import wait_until

NODE = "vm"


def _node_state() -> str:
    done = subprocess.run(["sinfo", "-h", "-N", "-n", NODE, "-o", "%T"], capture_output=True, text=True,
                          timeout=20)
    return done.stdout.split("\n")[0].strip().rstrip("*~#%")


def _running_again(slurm, job_id: str, restarts: int) -> None:
    """Wait for the requeued job to pend, let it start now (Slurm holds a requeued job ~2 min), and
    wait for its next run."""
    wait_until(lambda: slurm.show_job(job_id).get("Restarts") == str(restarts)
               and slurm.show_job(job_id).get("JobState") == "PENDING", 60, f"restart {restarts} pending")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=20)
    wait_until(lambda: slurm.show_job(job_id).get("JobState") == "RUNNING", 60, f"restart {restarts} running")


def test_a_requeued_job_reattaches_to_its_remote_job_and_completes(slurm, user_a, emulator):
    user_a.write("job.sh", TICKS.format(directives="").replace("seq 1 900", "seq 1 200"))  # ~40 s remote
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    _printing(emulator, job_id)
    subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True, timeout=20)
    _running_again(slurm, job_id, 1)
    subprocess.run(["scontrol", "update", f"NodeName={NODE}", "State=DOWN", "Reason=lost node (test)"],
                   check=True, capture_output=True, timeout=20)
    try:
        wait_until(lambda: slurm.show_job(job_id).get("Restarts") == "2", 60, "the requeue of a DOWN node")
    finally:  # with ReturnToService=2 the node may be back by itself: then RESUME is refused, and fine
        subprocess.run(["scontrol", "update", f"NodeName={NODE}", "State=RESUME"], capture_output=True,
                       timeout=20)
        wait_until(lambda: _node_state() in ("idle", "mixed", "allocated"), 60, "the node back up")
    _running_again(slurm, job_id, 2)
    fields = slurm.wait_job(job_id, timeout=180)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), fields
    assert len(remote_jobs(emulator, job_id)) == 1  # every run followed the same remote job
    log = _delivered(user_a, job_id, emulator)  # the whole remote log, each tick once, and the output
    assert "requeued: the remote job of" in log, log
    assert (user_a.path / "partial.txt").read_text() == "200\n"
