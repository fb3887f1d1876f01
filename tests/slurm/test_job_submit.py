"""deploy/slurm/job_submit.lua on a real slurmctld: the relay wrapper, the merged request, the guards."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from waiting import wait_until

from burst_agent.translate import parse_script

SCRIPT = """#!/bin/bash
#SBATCH -n 2
#SBATCH --time=1:30:00
#SBATCH --mem-per-cpu=2G
#SBATCH -J myjob
echo 'quotes "and" $HOME `ticks`'
cat <<'BURST_AGENT_SCRIPT'
BURST_AGENT_SCRIPT
echo héllo
echo no trailing newline"""

PLAIN = "#!/bin/bash\necho original script ran\n"
RELAY_ARGV = ["relay", "--script", "/dev/fd/3", "--request", "/dev/fd/4"]


def _request(wd, job_id) -> dict:
    return json.loads(wd.relay_record(job_id, "request.json"))


def test_relay_gets_the_original_script_byte_for_byte(cluster, workdir):
    workdir.write("job.sh", SCRIPT)
    job_id, fields = cluster.run_relay_job(workdir, "job.sh", "-n", "8")
    assert workdir.relay_record(job_id, "script") == SCRIPT
    assert workdir.relay_record(job_id, "argv").split() == RELAY_ARGV
    assert workdir.relay_record(job_id, "user").strip() == "burstuser_a"
    assert fields["JobState"] == "COMPLETED"


def test_request_is_the_merged_request_command_line_first(cluster, workdir):
    workdir.write("job.sh", SCRIPT)
    job_id, _ = cluster.run_relay_job(workdir, "job.sh", "-n", "8", "-o", "out-%j.txt")
    assert _request(workdir, job_id) == {
        "nodes": None, "ntasks": 8, "ntasks_per_node": None, "cpus_per_task": None,
        "mem_per_node_mb": None, "mem_per_cpu_mb": 2048, "mem_per_gpu_mb": None,
        "gpus_per_node": None, "gpus_per_task": None, "gpus": None,
        "time_limit_minutes": 90, "exclusive": None, "job_name": "myjob", "account": None,
        "partition": "rescale", "qos": None, "constraint": None, "workdir": str(workdir.path),
        "stdout": f"{workdir.path}/out-%j.txt", "stderr": None,
    }
    assert "stub relay: job" in cluster.wait_file(workdir.path / f"out-{job_id}.txt")


def test_the_translator_accepts_the_request_and_lets_it_win(cluster, workdir):
    workdir.write("job.sh", SCRIPT)
    job_id, _ = cluster.run_relay_job(workdir, "job.sh", "-n", "8", "--time=10")
    parsed = parse_script(SCRIPT, scheduler="slurm", request_overrides=_request(workdir, job_id))
    request = parsed.request
    assert (request.ntasks, request.mem_per_cpu_mb, request.walltime_seconds) == (8, 2048, 600)
    assert (request.job_name, request.partition, request.workdir) == ("myjob", "rescale", str(workdir.path))


def test_request_carries_nodes_gpus_exclusive_and_unlimited_time(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    options = ["-N", "2", "-n", "4", "--gpus-per-node=2", "--gpus-per-task=1", "--exclusive", "--mem=0",
               "--time=UNLIMITED", "-c", "3", "-A", "physics", "-C", "ib", "-J", "gpu job"]
    job_id, _ = cluster.run_relay_job(workdir, "job.sh", *options)
    request = _request(workdir, job_id)
    keys = ("nodes", "ntasks", "cpus_per_task", "gpus_per_node", "gpus_per_task")
    assert {k: request[k] for k in keys} == {
        "nodes": 2, "ntasks": 4, "cpus_per_task": 3, "gpus_per_node": 2, "gpus_per_task": 1,
    }
    assert (request["mem_per_node_mb"], request["exclusive"], request["time_limit_minutes"]) == (
        0, True, "UNLIMITED",
    )
    assert (request["account"], request["constraint"], request["job_name"]) == ("physics", "ib", "gpu job")
    resolved = parse_script(PLAIN, scheduler="slurm", request_overrides=request).request
    assert (resolved.nodes, resolved.ntasks_per_node, resolved.gpus_per_node) == (2, 2, 2)
    assert resolved.whole_node_memory and resolved.walltime_unlimited and resolved.exclusive


def test_request_reads_typed_gres_and_memory_per_gpu(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    options = ["-N", "2", "--ntasks-per-node=3", "--gres=gpu:tesla:2", "--mem-per-gpu=1000", "-e", "e.txt"]
    job_id, _ = cluster.run_relay_job(workdir, "job.sh", *options)
    request = _request(workdir, job_id)
    assert (request["gpus_per_node"], request["mem_per_gpu_mb"]) == (2, 1000)
    assert (request["nodes"], request["ntasks_per_node"]) == (2, 3)
    assert request["stderr"] == f"{workdir.path}/e.txt"


def test_total_gpus_and_unset_values_are_null(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    job_id, _ = cluster.run_relay_job(workdir, "job.sh", "-G", "4")
    request = _request(workdir, job_id)
    assert request["gpus"] == 4
    assert request["ntasks"] is None and request["time_limit_minutes"] is None
    assert request["job_name"] == "job.sh"


def test_the_slurm_side_job_is_one_relay_requeueable_and_charged(cluster, workdir):
    workdir.write("job.sh", SCRIPT)
    _, fields = cluster.run_relay_job(workdir, "job.sh", "-n", "8", "-c", "2")
    assert fields["Requeue"] == "1"  # a requeued job's next run re-attaches to its remote job
    assert (fields["NumNodes"], fields["NumCPUs"], fields["NumTasks"]) == ("1", "1", "1")
    assert fields["Licenses"] == "rescale_cores:16"
    assert fields["AdminComment"] == "burst-agent"
    assert fields["TimeLimit"] == "01:30:00"


def test_a_users_own_rescale_license_is_replaced(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    _, fields = cluster.run_relay_job(workdir, "job.sh", "-N", "2", "--ntasks-per-node=3",
                                      "--licenses=rescale_cores:1")
    assert fields["Licenses"] == "rescale_cores:6"


def test_a_job_above_the_license_cap_is_refused(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    done = cluster.run_as(workdir.user, ["sbatch", "-p", "rescale", "-n", "1001", "job.sh"], workdir.path)
    assert done.returncode != 0
    assert "Invalid license" in done.stderr


def test_licenses_are_left_alone_when_charging_is_off(cluster, workdir, lua_variant):
    lua_variant(CHARGE_LICENSES="false")
    workdir.write("job.sh", PLAIN)
    _, fields = cluster.run_relay_job(workdir, "job.sh", "-n", "4")
    assert fields["Licenses"] == "(null)"


def test_the_relay_exit_code_is_the_job_exit_code(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    _, fields = cluster.run_relay_job(workdir, "job.sh", "--export=ALL,BURST_STUB_EXIT=3")
    assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "3:0")


def test_relays_share_the_proxy_cores(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    env = {"BURST_STUB_SLEEP": "30"}
    jobs = [cluster.sbatch(workdir, "job.sh", "-p", "rescale", "-n", "4", env=env) for _ in range(4)]
    try:
        cluster.wait_state(jobs, "RUNNING")
    finally:
        subprocess.run(["scancel", *jobs], timeout=20)


def test_scancel_sends_sigterm_to_the_relay_itself(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    job_id = cluster.sbatch(workdir, "job.sh", "-p", "rescale", env={"BURST_STUB_SLEEP": "60"})
    cluster.wait_file(workdir.path / f"relay-{job_id}" / "env")
    subprocess.run(["scancel", job_id], check=True, timeout=20)
    assert cluster.wait_job(job_id)["JobState"] == "CANCELLED"
    assert cluster.wait_file(workdir.path / f"relay-{job_id}" / "signal") == "TERM\n"


def test_the_wrapper_leaves_no_files_behind(cluster, workdir_b):
    workdir_b.write("job.sh", PLAIN)
    job_id, _ = cluster.run_relay_job(workdir_b, "job.sh")
    assert workdir_b.relay_record(job_id, "user").strip() == "burstuser_b"
    for fd in ("fd3", "fd4"):
        target = workdir_b.relay_record(job_id, fd).strip()
        assert "/burst-relay." in target and target.endswith("(deleted)")


def test_a_missing_relay_fails_the_job_with_a_message(cluster, workdir, lua_variant):
    lua_variant(BURST_AGENT='"/nonexistent/burst-agent"')
    workdir.write("job.sh", PLAIN)
    job_id = cluster.sbatch(workdir, "job.sh", "-p", "rescale")
    fields = cluster.wait_job(job_id)
    assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "127:0")
    log = cluster.wait_file(workdir.path / f"slurm-{job_id}.out")
    assert "relay is not installed" in log and "/nonexistent/burst-agent" in log


def test_array_tasks_each_run_the_relay(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    job_id = cluster.sbatch(workdir, "job.sh", "-p", "rescale", "--array=1-2")
    for task in ("1", "2"):
        cluster.wait_job(f"{job_id}_{task}")
    envs = [p.read_text() for p in workdir.path.glob("relay-*/env")]
    cluster.wait_file(workdir.path / f"slurm-{job_id}_2.out")
    assert sorted(line for env in envs for line in env.splitlines() if "ARRAY_TASK_ID=" in line) == [
        "SLURM_ARRAY_TASK_ID=1", "SLURM_ARRAY_TASK_ID=2",
    ]


def test_srun_and_salloc_are_refused_with_the_reason(cluster, workdir):
    for argv in (["srun", "--partition=rescale", "hostname"], ["salloc", "--partition=rescale", "true"]):
        done = cluster.run_as(workdir.user, argv, workdir.path)
        assert done.returncode != 0
        assert "takes batch jobs only: use sbatch" in done.stderr


def test_rescale_mixed_with_other_partitions_is_refused(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    done = cluster.run_as(workdir.user, ["sbatch", "--partition=rescale,debug", "job.sh"], workdir.path)
    assert done.returncode != 0
    assert "cannot be combined with other partitions" in done.stderr


def test_heterogeneous_jobs_are_refused(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    argv = ["sbatch", "-p", "rescale", "-n1", ":", "-p", "rescale", "-n1", "job.sh"]
    done = cluster.run_as(workdir.user, argv, workdir.path)
    assert done.returncode != 0
    assert "heterogeneous jobs cannot run in partition rescale" in done.stderr


def test_other_partitions_run_the_original_script_untouched(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    cluster.wait_idle_node()
    for options in (["--partition=debug"], []):
        job_id = cluster.sbatch(workdir, "job.sh", *options)
        # A whole core each: it may wait for the cores of the previous tests' cancelled relays.
        fields = cluster.wait_job(job_id, timeout=120)
        assert cluster.wait_file(workdir.path / f"slurm-{job_id}.out") == "original script ran\n"
        assert (fields["Requeue"], fields["Licenses"], fields.get("AdminComment")) == ("1", "(null)", None)
        assert not (workdir.path / f"relay-{job_id}").exists()


def test_jobs_cannot_move_into_or_out_of_rescale(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    debug = cluster.sbatch(workdir, "job.sh", "--hold", "-p", "debug")
    rescale = cluster.sbatch(workdir, "job.sh", "--hold", "-p", "rescale")
    try:
        for job_id, change in ((debug, "partition=rescale"), (rescale, "partition=debug"),
                               (rescale, "numtasks=4")):
            argv = ["scontrol", "update", f"jobid={job_id}", change]
            done = cluster.run_as(workdir.user, argv, workdir.path)
            assert done.returncode != 0, change
        assert cluster.show_job(debug)["Partition"] == "debug"
        assert cluster.show_job(rescale)["NumTasks"] == "1"
    finally:
        subprocess.run(["scancel", debug, rescale], timeout=20)


def _defaults() -> list[str]:
    argv = ["scontrol", "-o", "show", "partition"]
    shown = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    return [line.split()[0].removeprefix("PartitionName=") for line in shown.stdout.splitlines()
            if " Default=YES " in f" {line} "]


def _default_partition(name: str) -> None:
    """Make `name` the cluster's default in slurm.conf and reconfigure (a runtime `scontrol update
    ... Default=YES` would leave the old default flagged for job_submit.lua too)."""
    conf = Path("/etc/slurm/slurm.conf")
    lines = []
    for line in conf.read_text().splitlines():
        if line.startswith("PartitionName="):
            mine = line.startswith(f"PartitionName={name} ")
            line = re.sub(r"\bDefault=(YES|NO)\b", f"Default={'YES' if mine else 'NO'}", line)
        lines.append(line)
    conf.write_text("\n".join(lines) + "\n")
    subprocess.run(["scontrol", "reconfigure"], check=True, timeout=30)
    wait_until(lambda: _defaults() == [name], 20, f"{name} as the default partition")


def test_a_job_without_a_partition_bursts_when_rescale_is_the_default(cluster, workdir):
    workdir.write("job.sh", PLAIN)
    _default_partition("rescale")
    try:
        job_id = cluster.sbatch(workdir, "job.sh")
        fields = cluster.wait_job(job_id)
    finally:
        _default_partition("debug")
    assert (fields["Partition"], fields.get("AdminComment")) == ("rescale", "burst-agent"), fields
    cluster.wait_file(workdir.path / f"relay-{job_id}" / "env")  # the stub relay ran, not the script
    assert _request(workdir, job_id)["partition"] == "rescale"
