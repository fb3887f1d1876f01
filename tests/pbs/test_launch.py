"""The execjob_launch/execjob_end hook (deploy/pbs/burst_launch.py): the relay swap, its files and argv."""

from __future__ import annotations

import base64
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from burst_agent.config import load_config
from burst_agent.dialects import parse_script
from burst_agent.translate import load_catalogue, translate

SCRIPT = b"#!/bin/bash\n#PBS -N cfd\n#PBS -l select=1:ncpus=2\ncd $PBS_O_WORKDIR\nmpirun ./solver\n"
CORETYPES = Path(__file__).parents[2] / "burst_agent" / "data" / "coretypes.json"
USER = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def mom(tmp_path, pbs, monkeypatch):
    """mom(job_id, queue, request) -> an execjob_launch event as the proxy's MoM would run it."""
    home = tmp_path / "pbs_home"
    (home / "mom_priv" / "jobs").mkdir(parents=True)
    monkeypatch.setitem(pbs.pbs_conf, "PBS_HOME", str(home))
    workdir = tmp_path / "work"
    workdir.mkdir()

    def make(job_id="123.pbsserver", queue="rescale", request=None, cores=16, script=SCRIPT):
        if script is not None:
            (home / "mom_priv" / "jobs" / f"{job_id}.SC").write_bytes(script)
        env = {"PBS_JOBID": job_id, "PBS_JOBNAME": "cfd", "PBS_QUEUE": queue, "PBS_O_WORKDIR": str(workdir),
               "PBS_ENVIRONMENT": "PBS_BATCH", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        if request is not None:
            env["BURST_REQUEST_B64"] = base64.b64encode(json.dumps(request).encode()).decode()
        job = pbs.job(id=job_id, queue=pbs.queue(queue), euser=USER, egroup=None,
                      Resource_List={"select": pbs.select("1:ncpus=1"), "rescale_cores": cores})
        return pbs.Event(pbs.EXECJOB_LAUNCH, job, progname="/bin/bash", argv=["-bash"], env=env)

    make.workdir = workdir
    return make


REQUEST = {"nodes": 2, "ntasks": 16, "ntasks_per_node": 8, "cpus_per_task": 1, "time_limit_minutes": 150,
           "partition": "rescale"}


def test_rescale_job_runs_the_relay_instead_of_its_shell(launch, mom, run_hook):
    event = run_hook(launch, mom(request=REQUEST))
    job_dir = os.path.join(launch.RUN_DIR, "123.pbsserver")
    assert event.accepted
    assert event.progname == launch.BURST_AGENT
    assert event.argv == [launch.BURST_AGENT, "relay", "--script", f"{job_dir}/script",
                          "--request", f"{job_dir}/request.json"]
    assert "BURST_REQUEST_B64" not in event.env and event.env["PBS_JOBID"] == "123.pbsserver"


def test_relay_files_are_private_to_the_job_user(launch, mom, run_hook):
    run_hook(launch, mom(request=REQUEST))
    job_dir = Path(launch.RUN_DIR, "123.pbsserver")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (job_dir, *job_dir.iterdir())}
    assert modes == {"123.pbsserver": 0o700, "script": 0o600, "request.json": 0o600}
    assert {p.stat().st_uid for p in (job_dir, *job_dir.iterdir())} == {os.getuid()}
    assert (job_dir / "script").read_bytes() == SCRIPT
    assert json.loads((job_dir / "request.json").read_text()) == REQUEST


def test_job_of_another_queue_keeps_its_shell(launch, mom, run_hook):
    event = run_hook(launch, mom(queue="workq", request=REQUEST))
    assert event.accepted
    assert (event.progname, event.argv) == ("/bin/bash", ["-bash"])
    assert not os.path.exists(launch.RUN_DIR)


def test_spool_setting_is_passed_to_the_relay(launch, mom, run_hook):
    launch.SPOOL_DIR = "/var/spool/burst-agent/in"
    event = run_hook(launch, mom(request=REQUEST))
    assert event.argv[-2:] == ["--spool", "/var/spool/burst-agent/in"]


def test_request_altered_after_submission_is_refused(launch, mom, run_hook):
    event = run_hook(launch, mom(request={**REQUEST, "nodes": 64, "ntasks": 512}, cores=16))
    assert event.rejected
    assert "asks for 512 cores but the job was charged rescale_cores=16" in event.message
    assert event.progname == "/bin/bash"


def test_missing_job_script_is_refused_naming_the_path(launch, mom, run_hook):
    event = run_hook(launch, mom(request=REQUEST, script=None))
    assert event.rejected
    assert "cannot read the job script" in event.message and "mom_priv/jobs/123.pbsserver.SC" in event.message


def test_job_queued_before_the_hook_gets_an_empty_request_and_a_warning(launch, pbs, mom, run_hook):
    run_hook(launch, mom(request=None))
    assert Path(launch.RUN_DIR, "123.pbsserver", "request.json").read_text() == "{}\n"
    assert any(level == pbs.LOG_WARNING and "BURST_REQUEST_B64 is not set" in m for level, m in pbs.LOG)


def test_end_of_job_removes_its_directory(launch, pbs, mom, run_hook):
    event = run_hook(launch, mom(job_id="77[3].pbsserver", request=REQUEST))
    job_dir = Path(launch.RUN_DIR, "77_3_.pbsserver")
    assert event.argv[3] == str(job_dir / "script")
    run_hook(launch, pbs.Event(pbs.EXECJOB_END, event.job))
    assert not job_dir.exists() and Path(launch.RUN_DIR).is_dir()


def test_job_dir_names_cannot_escape_the_run_dir(launch):
    assert launch.job_dir_name("12[1].srv") == "12_1_.srv"
    assert launch.job_dir_name("../../etc") == "_.._.._etc"
    assert launch.job_dir_name("") == "_"


def test_relay_contract_under_a_pbs_environment(launch, mom, run_hook):
    event = mom(job_id="88[4].pbsserver", request=REQUEST)
    event.env.update({"PBS_ARRAY_INDEX": "4", "PBS_ARRAY_ID": "88[].pbsserver", "BURST_STUB_EXIT": "3"})
    run_hook(launch, event)
    done = subprocess.run(event.argv, executable=event.progname, env=dict(event.env), capture_output=True,
                          text=True, timeout=30)
    assert (done.returncode, done.stdout) == (3, "stub relay: job 88[4].pbsserver\n")
    seen = mom.workdir / "relay"
    assert (seen / "argv").read_text().split("\n")[:4] == ["relay", "--script", event.argv[3], "--request"]
    assert (seen / "modes").read_text().split() == ["600", "600", "700"]
    assert (seen / "script").read_bytes() == SCRIPT
    assert json.loads((seen / "request.json").read_text()) == REQUEST
    env = (seen / "env").read_text().splitlines()
    assert {"PBS_ARRAY_INDEX=4", "PBS_JOBID=88[4].pbsserver", f"PBS_O_WORKDIR={mom.workdir}"} <= set(env)


def test_submission_to_translation_end_to_end(queuejob, launch, pbs, make_job, mom, run_hook):
    """qsub -l select=2:ncpus=8:... over a script saying select=1:ncpus=2: the command line wins remotely."""
    submitted = make_job()
    run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, submitted))
    encoded = submitted.Variable_List["BURST_REQUEST_B64"]
    event = mom(request=json.loads(base64.b64decode(encoded)), cores=submitted.Resource_List["rescale_cores"])
    run_hook(launch, event)
    job_dir = Path(launch.RUN_DIR, "123.pbsserver")
    parsed = parse_script((job_dir / "script").read_text(), scheduler="pbs",
                          request_overrides=json.loads((job_dir / "request.json").read_text()))
    catalogue = load_catalogue(json.loads(CORETYPES.read_text()))
    result = translate(parsed, catalogue, load_config(None, environ={}).translate)
    assert (result.slots, result.walltime_hours) == (2, 3)
    assert result.cores_per_slot >= 8 and result.body["name"] == "cfd"
