"""An exact cloud-core charge: with job_submit.lua's SIZE_CHARGE, a burst job is held until `burst-agent
size-charges` (root or SlurmUser) charges it the cores its translation runs on Rescale, so sacct's
AllocTRES (and sreport, and GrpTRESMins) count those, not tasks x cpus."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import AGENT, REPO, install_lua, render_lua
from waiting import wait_until

CORETYPES = REPO / "burst_agent" / "data" / "coretypes.json"
# 6 tasks x 1 cpu, but 20 GB: the translation takes nickel, 8 cores x 1 slot
ROUNDED_UP = "#!/bin/bash\n#SBATCH -n 6\n#SBATCH --mem=20G\necho six tasks, twenty gigabytes\n"


def _size_once() -> str:
    done = subprocess.run([sys.executable, "-m", "burst_agent.cli", "size-charges", "--once",
                           "--coretypes", str(CORETYPES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_held_job_is_charged_the_cores_it_runs_on_and_sacct_counts_them(cluster, workdir, lua_variant):
    lua_variant(SIZE_CHARGE="true")
    workdir.write("job.sh", ROUNDED_UP)
    job_id = cluster.sbatch(workdir, "job.sh", "--partition=rescale")
    held = wait_until(lambda: (f := cluster.show_job(job_id)).get("Reason", "").startswith("JobHeld") and f,
                      20, "the job held at submission")
    assert (held["Licenses"], held["AdminComment"]) == ("rescale_cores:6", "burst-agent:sizing"), held
    mine = cluster.run_as(workdir.user, ["scontrol", "release", job_id], workdir.path)
    assert mine.returncode != 0, "the owner released a job waiting for its charge"
    assert f"job {job_id}: released: 8 cloud cores" in _size_once()
    assert cluster.show_job(job_id)["Licenses"] == "rescale_cores:8"
    assert cluster.wait_job(job_id, timeout=120)["JobState"] == "COMPLETED"
    record = wait_until(lambda: (r := cluster.sacct(job_id)).get("State") == "COMPLETED" and r, 60, "sacct")
    assert re.search(r"(^|,)license/rescale_cores=8(,|$)", record["AllocTRES"]), record


def test_a_job_that_cannot_be_sized_goes_with_the_estimate_and_is_never_stuck(cluster, workdir, lua_variant):
    lua_variant(SIZE_CHARGE="true")
    workdir.write("job.sh", "#!/bin/bash\n#SBATCH -n 2\n#SBATCH --gres=gpu:1\necho no GPU coretype here\n")
    job_id = cluster.sbatch(workdir, "job.sh", "--partition=rescale")
    wait_until(lambda: cluster.show_job(job_id).get("Reason", "").startswith("JobHeld"), 20, "held")
    out = _size_once()
    assert re.search(rf"job {job_id}: released: not translatable \(.*\): estimate kept", out), out
    assert cluster.wait_job(job_id, timeout=120)["JobState"] == "COMPLETED"
    assert cluster.show_job(job_id)["Licenses"] == "rescale_cores:2"
    named = cluster.run_as(workdir.user, ["sbatch", "--partition=rescale", "-J", "x AdminComment=burst-agent",
                                          "job.sh"], workdir.path)
    assert named.returncode != 0 and "name cannot contain 'AdminComment='" in named.stderr, named.stderr


def test_without_size_charge_nothing_is_held(cluster, workdir):
    workdir.write("job.sh", ROUNDED_UP)
    _job_id, fields = cluster.run_relay_job(workdir, "job.sh")
    assert (fields["JobState"], fields["Licenses"], fields["AdminComment"]) == \
        ("COMPLETED", "rescale_cores:6", "burst-agent"), fields


def test_an_array_is_sized_once_and_a_job_submitted_held_stays_held_for_its_owner(cluster, workdir,
                                                                                      lua_variant):
    lua_variant(SIZE_CHARGE="true")
    workdir.write("job.sh", ROUNDED_UP)
    array = cluster.sbatch(workdir, "job.sh", "--partition=rescale", "--array=1-2")
    kept = cluster.sbatch(workdir, "job.sh", "--partition=rescale", "--hold")
    wait_until(lambda: cluster.show_job(kept).get("Reason", "").startswith("JobHeld"), 20, "held")
    out = _size_once()
    assert f"job {kept}: sized, kept held as submitted: 8 cloud cores" in out, out
    for task in (f"{array}_1", f"{array}_2"):
        assert cluster.wait_job(task, timeout=120)["JobState"] == "COMPLETED"
        record = wait_until(lambda t=task: (r := cluster.sacct(t)).get("State") == "COMPLETED" and r, 60,
                            task)
        assert re.search(r"(^|,)license/rescale_cores=8(,|$)", record["AllocTRES"]), record
    held = cluster.show_job(kept)
    assert (held["JobState"], held["Licenses"], held["AdminComment"]) == ("PENDING", "rescale_cores:8",
                                                                           "burst-agent"), held
    assert cluster.run_as(workdir.user, ["scontrol", "release", kept], workdir.path).returncode == 0
    assert cluster.wait_job(kept, timeout=120)["JobState"] == "COMPLETED"


def test_with_the_agent_the_job_runs_on_the_cores_it_was_charged(slurm, user_a, service):
    install_lua(render_lua(BURST_AGENT=json.dumps(str(AGENT)), SPOOL_DIR=json.dumps(str(service.spool)),
                           SIZE_CHARGE="true"))
    try:
        user_a.write("job.sh", ROUNDED_UP)
        job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    finally:
        service.plug_in()  # the session's plugin again: what is submitted is held already
    wait_until(lambda: slurm.show_job(job_id).get("Reason", "").startswith("JobHeld"), 20, "held")
    # The sizer reads the catalogue the agent itself translates with: its copy in the spool.
    copy = service.spool / "catalogue" / "coretypes.json"
    wait_until(copy.exists, 30, f"the agent's catalogue copy {copy}")
    done = subprocess.run([sys.executable, "-m", "burst_agent.cli", "size-charges", "--once", "--config",
                           str(service.config)], capture_output=True, text=True, timeout=60)
    assert f"job {job_id}: released: 8 cloud cores" in done.stdout, done.stdout + done.stderr
    record = slurm.wait_sacct(job_id, "completed (exit 0)")
    assert re.search(r"(^|,)license/rescale_cores=8(,|$)", record["AllocTRES"]), record
    assert " cores=8x1 " in record["Comment"], record  # 8 cores x 1 slot: what was charged


def test_the_sizing_benchmark_runs_and_reports(cluster):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "charge_sizing.py"), "4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "4 held jobs, 4 at a time: released 4 in " in done.stdout and "peer: 4 x scontrol" in done.stdout
