"""A lost proxy node: two burst jobs run remotely with their relays on n1, then n1's whole namespace is
killed (slurmd, slurmstepd, relays: kill -9). Slurm marks n1 DOWN after SlurmdTimeout and requeues the
jobs; the agent's orphan check sees their relays silent but the jobs pending, and spares the remote jobs,
which run on; the next runs, on n2, re-attach to them. Every job completes with its whole log and its
outputs, and has exactly one remote job."""

from __future__ import annotations

import subprocess
import time

from conftest import tcp_sockets
from test_cancel_delivery import TICKS, _delivered, _printing
from test_relay_e2e import remote_jobs
from waiting import wait_until

from burst_agent.agent import ORPHAN_CHECK_S

TICK_COUNT = 300  # 0.2 s each: the remote jobs print for ~60 s, past the node's loss and the requeue
RELAY_GRACE_S = 10  # the service fixture's agent.relay_grace_s


def _requeued(slurm, job_ids: list[str]) -> bool:
    fields = [slurm.show_job(j) for j in job_ids]
    return all((f.get("Restarts"), f.get("JobState")) == ("1", "PENDING") for f in fields)


def _on(slurm, job_ids: list[str], node: str, restarts: str) -> None:
    def there() -> bool:
        fields = [slurm.show_job(j) for j in job_ids]
        return all((f.get("JobState"), f.get("NodeList"), f.get("Restarts")) == ("RUNNING", node, restarts)
                   for f in fields)
    wait_until(there, 90, f"jobs {job_ids} running on {node} (restarts {restarts})", interval=0.2)


def _by_tcp(before: set[tuple[str, str]]) -> set[str]:
    return {node for node, _ in tcp_sockets() - before}


def test_jobs_of_a_lost_node_are_requeued_reattach_and_complete(slurm, user_a, user_b, emulator, transport):
    tcp = {"tcp": {"n1", "n2"}, "unix": set()}[transport]  # the nodes whose relays use TCP, by the end
    before, job_ids = tcp_sockets(), []
    for wd in (user_a, user_b):
        wd.write("job.sh", TICKS.format(directives="").replace("seq 1 900", f"seq 1 {TICK_COUNT}"))
        job_ids.append(slurm.sbatch(wd, "job.sh", "--partition=rescale"))
    _on(slurm, job_ids, "n1", "0")  # n1 weighs least: both start there
    for job_id in job_ids:
        _printing(emulator, job_id)
    remote = {j: [r.id for r in remote_jobs(emulator, j)] for j in job_ids}
    assert _by_tcp(before) == tcp & {"n1"}  # seen now: a socket in TIME_WAIT lasts a minute

    lost = time.monotonic()
    slurm.rig("kill-node", "n1")
    try:
        wait_until(lambda: _requeued(slurm, job_ids), 90, "the requeue of the lost node's jobs", interval=0.2)
        assert slurm.node_state("n1") == "down"
        # Silent relays for longer than the grace and a whole orphan check cycle: the check ran on them.
        time.sleep(max(0.0, lost + RELAY_GRACE_S + ORPHAN_CHECK_S + 5 - time.monotonic()))
        for job_id in job_ids:  # Slurm holds a requeued job 2 min (its BeginTime): let it start now
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=20)
        _on(slurm, job_ids, "n2", "1")
    finally:
        slurm.bring_up("n1")  # the rig stays usable whatever happened

    for wd, job_id in zip((user_a, user_b), job_ids, strict=True):
        fields = slurm.wait_job(job_id, timeout=240)
        assert (fields["JobState"], fields["ExitCode"], fields["NodeList"]) == ("COMPLETED", "0:0", "n2")
        log = _delivered(wd, job_id, emulator)  # the whole remote log, each tick once, and partial.txt
        assert "requeued: the remote job of" in log, log
        assert (wd.path / "partial.txt").read_text() == f"{TICK_COUNT}\n"
        assert [r.id for r in remote_jobs(emulator, job_id)] == remote[job_id]  # one, the same, remote job
    assert _by_tcp(before) >= tcp - {"n1"}
