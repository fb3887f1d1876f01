"""The rig is a real multi-node Slurm: a burst job runs its relay on either proxy node (each in its own
network namespace, with its own hostname) and completes through the one agent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import tcp_sockets
from test_relay_e2e import remote_jobs

JOB = "#!/bin/bash\necho remote on Rescale\ncat in.txt > out.txt\n"


@pytest.mark.parametrize(("node", "other"), [("n1", "n2"), ("n2", "n1")])
def test_a_job_on_each_node_completes(slurm, user_a, emulator, transport, node, other):
    user_a.write("in.txt", f"for {node}\n")
    user_a.write("job.sh", JOB)
    before = tcp_sockets()
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale", f"--exclude={other}")  # -w is dropped
    fields = slurm.wait_job(job_id, timeout=90)
    assert (fields["JobState"], fields["ExitCode"], fields["NodeList"]) == ("COMPLETED", "0:0", node)
    assert (user_a.path / "out.txt").read_text() == f"for {node}\n"
    assert "remote on Rescale" in slurm.wait_file(user_a.path / f"slurm-{job_id}.out")
    assert len(remote_jobs(emulator, job_id)) == 1  # it ran on the (emulated) Rescale, not on the node
    by_tcp = {n for n, _ in tcp_sockets() - before}
    assert by_tcp == ({node} if transport == "tcp" else set())  # the relay asked the agent by TCP, or not


@pytest.mark.parametrize("node", ["n1", "n2"])
def test_each_node_has_its_own_hostname_and_address(multi_rig, node):
    pid = Path(f"/run/slurm-multi/slurmd-{node}.pid").read_text().strip()
    hostname = subprocess.run(["nsenter", "-t", pid, "-u", "hostname"], capture_output=True, text=True,
                              timeout=20).stdout.strip()
    addresses = subprocess.run(["nsenter", "-t", pid, "-n", "ip", "-o", "-4", "addr"], capture_output=True,
                               text=True, timeout=20).stdout
    assert hostname == node and f"10.77.{node[1:]}.2/24" in addresses
