"""Slurm accounting (slurmdbd) tells the truth about burst jobs: sacct's State, ExitCode and the remote
run's record for the agent's cancel and a relay killed on its node (the other outcomes: test_first_week),
the remote phase in squeue while it runs, cloud cores as a tracked resource, and account limits on
license/rescale_cores that Slurm itself enforces before anything reaches Rescale."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import AGENT, RUNUSER
from test_cancel_delivery import TICKS, _printing
from test_first_week import _squeue_comment
from test_relay_e2e import remote_jobs
from waiting import wait_until


def test_the_agents_cancel_is_cancelled_in_sacct_with_the_remote_record(slurm, user_a, emulator, service):
    user_a.write("job.sh", TICKS.format(directives="#SBATCH -n 2\n"))
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    _printing(emulator, job_id)
    comment = wait_until(lambda: (c := _squeue_comment(job_id)).startswith("executing on") and c, 30,
                         "the remote phase in squeue")
    remote_id = remote_jobs(emulator, job_id)[0].id
    assert f"rescale={remote_id} " in comment and "cost~=" in comment, comment
    entry = next((service.spool / "claimed").iterdir()).name
    subprocess.run([RUNUSER, "-u", "burst-agent", "--", str(AGENT), "cancel", "--config", str(service.config),
                    entry], check=True, capture_output=True, timeout=30)
    record = slurm.wait_sacct(job_id, "cancelled")
    assert record["State"] == "CANCELLED" or record["State"].startswith("CANCELLED by"), record
    assert f"rescale={remote_id} " in record["Comment"] and "end=" in record["Comment"], record
    assert re.search(r"(^|,)license/rescale_cores=2(,|$)", record["AllocTRES"]), record  # -n 2: 2 cores
    assert record["Account"] == "physics"


def test_a_relay_killed_on_its_node_fails_in_sacct_and_its_remote_run_is_recorded(slurm, user_a, emulator):
    user_a.write("job.sh", TICKS.format(directives="").replace("seq 1 900", "seq 1 150"))  # 30 s remote
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    _printing(emulator, job_id)
    pids = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, timeout=20).stdout
    for pid in re.findall(r"^(\d+)\s", pids, re.M):
        subprocess.run(["kill", "-9", pid], timeout=10)
    # The epilog's delivery follows the remote run to its end and keeps the record with sacctmgr (which
    # lowercases it on 22.05: docs/accounting.md).
    record = slurm.wait_sacct(job_id, "completed (exit 0)", timeout=120)
    assert (record["State"], record["ExitCode"]) == ("FAILED", "0:9"), record
    assert f"rescale={remote_jobs(emulator, job_id)[0].id.lower()} " in record["Comment"], record
    assert "run_s=" in record["Comment"] and "cost~=" in record["Comment"], record


def test_a_job_rescale_cannot_place_runs_on_the_next_coretype_and_sacct_names_it(slurm, user_a, emulator,
                                                                                 service):
    script = "#!/bin/bash\n#SBATCH -n 2\necho placed\n"
    cheapest, following = _cheapest_two(script, yaml.safe_load(service.config.read_text())["translate"])
    emulator.faults.update({"no_capacity": [cheapest]})
    try:
        user_a.write("job.sh", script)
        job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
        record = slurm.wait_sacct(job_id, "completed (exit 0)")
        assert (record["State"], record["ExitCode"]) == ("COMPLETED", "0:0"), record
        assert f"coretype={following} " in record["Comment"], record
        log = (user_a.path / f"slurm-{job_id}.out").read_text()
        assert f"Rescale could not place the job on {cheapest}" in log and "placed" in log, log
    finally:
        emulator.faults.update({"no_capacity": []})


def test_sacct_sync_writes_the_billed_cost_into_the_jobs_record(slurm, user_a, emulator, service):
    from decimal import Decimal

    from burst_agent.billing import JobCharge
    from burst_agent.config import load_config
    from burst_agent.stores import open_store

    user_a.write("job.sh", "#!/bin/bash\necho billed\n")
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    record = slurm.wait_sacct(job_id, "completed (exit 0)")
    remote_id = remote_jobs(emulator, job_id)[0].id
    with open_store(load_config(service.config).agent.state_db) as store:  # as the billing cycle would
        store.record_charges([JobCharge(remote_id, time.strftime("%Y-%m"), "proj", Decimal("1.23"),
                                        Decimal("1.20"), "$")])
    done = subprocess.run([str(AGENT), "sacct-sync", "--config", str(service.config)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and f"{job_id}: written:" in done.stdout, done.stdout + done.stderr
    record = slurm.wait_sacct(job_id, "completed (exit 0)")
    assert "cost~=" in record["Comment"] and record["Comment"].endswith("cost=1.23"), record
    again = subprocess.run([str(AGENT), "sacct-sync", "--config", str(service.config)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and again.stdout == ""  # already there: nothing written twice


def _cheapest_two(script: str, translate_section: dict) -> tuple[str, str]:
    from burst_agent.config import config_from_mapping
    from burst_agent.translate import load_catalogue, parse_script, translate

    data = json.loads((Path(__file__).parents[2] / "burst_agent" / "data" / "coretypes.json").read_text())
    cfg = config_from_mapping({"translate": translate_section}).translate
    result = translate(parse_script(script), load_catalogue(data), cfg, fallbacks=1)
    return result.coretype, result.fallbacks[0].coretype


@pytest.fixture
def limited() -> Iterator[Callable[..., None]]:
    """Set a limit on account chemistry (burstuser_b) for one test; cleared afterwards."""
    def limit(**tres: str) -> None:
        settings = [f"{key}=license/rescale_cores={value}" for key, value in tres.items()]
        subprocess.run(["sacctmgr", "-i", "modify", "account", "chemistry", "set", *settings], check=True,
                       capture_output=True, timeout=30)
    yield limit
    limit(GrpTRES="-1", GrpTRESMins="-1")


def _pending_reason(slurm, job_id: str) -> str:
    return wait_until(lambda: (f := slurm.show_job(job_id)).get("Reason", "None") != "None"
                      and f["JobState"] == "PENDING" and f["Reason"], 30, "a pending reason")


def test_an_account_over_its_cloud_core_minutes_pends_with_slurms_reason(cluster, workdir_b, limited):
    limited(GrpTRESMins="0")
    workdir_b.write("job.sh", "#!/bin/bash\n#SBATCH -n 2\necho never\n")
    job_id = cluster.sbatch(workdir_b, "job.sh", "--partition=rescale")
    try:
        assert _pending_reason(cluster, job_id) == "AssocGrpLicenseMinutes"
        assert not (workdir_b.path / f"relay-{job_id}").exists()  # the relay never ran: nothing on Rescale
    finally:
        subprocess.run(["scancel", job_id], timeout=20)


def test_an_account_at_its_concurrent_cloud_cores_queues_the_next_job(cluster, workdir_b, limited):
    limited(GrpTRES="2")
    workdir_b.write("job.sh", "#!/bin/bash\n#SBATCH -n 2\necho running\n")
    first = cluster.sbatch(workdir_b, "job.sh", "--partition=rescale", env={"BURST_STUB_SLEEP": "60"})
    second = cluster.sbatch(workdir_b, "job.sh", "--partition=rescale")
    try:
        cluster.wait_state([first], "RUNNING", timeout=60)
        assert _pending_reason(cluster, second) == "AssocGrpLicense"
        subprocess.run(["scancel", first], timeout=20)
        cluster.wait_job(second, timeout=90)  # the cores came free: it ran
    finally:
        subprocess.run(["scancel", first, second], timeout=20)


def _reload(service, spending: dict) -> None:
    """Rewrite the agent's spending settings and SIGHUP it; wait until it says it reloaded."""
    config = yaml.safe_load(service.config.read_text())
    config["spending"] = spending
    service.config.write_text(yaml.safe_dump(config))
    before = service.logs().count("config reloaded")
    agent = subprocess.run(["pgrep", "-u", "burst-agent", "-f", f"run --config {service.config}"],
                           capture_output=True, text=True, timeout=20).stdout.split()
    subprocess.run(["kill", "-HUP", *agent], check=True, timeout=20)
    wait_until(lambda: service.logs().count("config reloaded") > before, 30, "the agent's reload")


def test_an_account_over_its_monthly_budget_waits_with_the_reason_and_goes_when_raised(
        slurm, user_b, emulator, service):
    _reload(service, {"monthly_by_account": {"chemistry": 0}})
    try:
        user_b.write("job.sh", "#!/bin/bash\necho paid for\n")
        job_id = slurm.sbatch(user_b, "job.sh", "--partition=rescale")
        out = user_b.path / f"slurm-{job_id}.out"
        wait_until(lambda: out.exists() and "account chemistry has spent an estimated 0.00 of its 0.00 budget"
                   in out.read_text(), 60, "the hold in slurm-N.out")
        assert "held until" in out.read_text() and slurm.show_job(job_id)["JobState"] == "RUNNING"
        wait_until(lambda: _squeue_comment(job_id).startswith("held: account chemistry"), 30, "squeue")
        assert not remote_jobs(emulator, job_id)  # nothing reached Rescale
    finally:
        _reload(service, {})
    assert slurm.wait_job(job_id, timeout=120)["JobState"] == "COMPLETED"


def _chemistry_minutes(start: int) -> int:
    """sreport's license/rescale_cores minutes of burstuser_b (account chemistry) in the hour from `start`."""
    start_at, end_at = (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) for t in (start, start + 3600))
    argv = ["sreport", "-n", "-P", "cluster", "AccountUtilizationByUser", "-T", "license/rescale_cores",
            f"start={start_at}", f"end={end_at}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    return sum(int(line.split("|")[-1]) for line in out.splitlines() if "|chemistry|burstuser_b|" in line)


FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"  # Debian's libfaketime


def _restart_slurmdbd(**env: str) -> None:
    subprocess.run(["pkill", "-x", "slurmdbd"], timeout=20)
    wait_until(lambda: subprocess.run(["pgrep", "-x", "slurmdbd"], capture_output=True).returncode != 0, 30,
               "slurmdbd to stop")
    subprocess.run(["/usr/sbin/slurmdbd"], check=True, timeout=30, env={"PATH": "/usr/bin:/bin", **env},
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run(["sacctmgr", "-n", "list", "cluster"], capture_output=True,
                                      timeout=20).returncode == 0, 30, "slurmdbd to answer")


def test_sreport_shows_the_cloud_core_hours_of_the_jobs_run(cluster, workdir_b):
    hour = int(time.time()) // 3600 * 3600
    workdir_b.write("job.sh", "#!/bin/bash\n#SBATCH -n 8\necho eight cloud cores\n")
    job_id = cluster.sbatch(workdir_b, "job.sh", "--partition=rescale", env={"BURST_STUB_SLEEP": "30"})
    assert cluster.wait_job(job_id, timeout=120)["JobState"] == "COMPLETED"
    before = _chemistry_minutes(hour)
    # slurmdbd rolls usage up at each hour for the hours that are over: an hour ahead (faketime), it
    # rolls up this one now, from where the test says the last roll-up was.
    subprocess.run(["mysql", "-u", "root", "slurm_acct_db", "-e",
                    f"UPDATE burstci_last_ran_table SET hourly_rollup={hour}"], check=True, timeout=30)
    try:
        assert Path(FAKETIME).exists(), f"{FAKETIME} missing: .ci/slurm-setup.sh installs libfaketime"
        _restart_slurmdbd(LD_PRELOAD=FAKETIME, FAKETIME="+1h")
        # 8 licenses for the relay's ~30 s: about 4 core-minutes, at least 3 whatever the rounding
        wait_until(lambda: _chemistry_minutes(hour) >= before + 3, 60, "the job's core-minutes in sreport")
    finally:
        _restart_slurmdbd()
