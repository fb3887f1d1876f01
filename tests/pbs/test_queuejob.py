"""The queuejob/movejob/modifyjob hook (deploy/pbs/burst_queuejob.py) against the stand-in pbs module."""

from __future__ import annotations

import base64
import json

import pytest

from burst_agent.dialects import parse_script


def request_of(job) -> dict:
    return json.loads(base64.b64decode(job.Variable_List["BURST_REQUEST_B64"]))


def test_rescale_job_is_accepted_with_its_translated_request(queuejob, pbs, make_job, run_hook):
    job = make_job()
    event = run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job))
    assert event.accepted
    assert request_of(job) == {
        "nodes": 2, "ntasks": 16, "ntasks_per_node": 8, "cpus_per_task": 1, "mem_per_node_mb": 16384,
        "mem_per_cpu_mb": None, "mem_per_gpu_mb": None, "gpus_per_node": None, "gpus_per_task": None,
        "gpus": None, "time_limit_minutes": 150, "exclusive": None, "job_name": "cfd", "account": "proj-7",
        "partition": "rescale", "constraint": None, "workdir": "/home/alice/run",
        "stdout": "/home/alice/run/cfd.out", "stderr": "/home/alice/run/cfd.err",
    }


def test_rescale_job_shrinks_to_one_relay_and_is_never_rerun(queuejob, pbs, make_job, run_hook):
    job = make_job(Resource_List={"select": pbs.select("2:ncpus=8:mem=16gb"), "place": pbs.place("scatter"),
                                  "ncpus": 16, "mem": pbs.size("32gb")})
    run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job))
    assert job.Rerunable is False
    assert dict(job.Resource_List) == {"select": "1:ncpus=1:mem=256mb:Qlist=rescale", "place": "pack",
                                       "rescale_cores": 16}
    assert isinstance(job.Resource_List["select"], pbs.select)


def test_request_file_keys_are_the_ones_the_agent_accepts(queuejob, pbs, make_job, run_hook):
    queuejob.burst_agent_available = lambda: False  # GPU coretypes need translate.gpu_coretypes: not here
    job = make_job(Resource_List={"select": pbs.select("3:ncpus=4:mpiprocs=2:ngpus=1:mem=8gb"),
                                  "walltime": pbs.duration(7200)})
    run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job))
    req = parse_script("#!/bin/bash\n#PBS -l select=1:ncpus=1\n", scheduler="pbs",
                       request_overrides=request_of(job)).request
    assert (req.nodes, req.ntasks_per_node, req.cpus_per_task) == (3, 2, 2)
    assert (req.mem_per_node_mb, req.gpus_per_node, req.walltime_seconds) == (8192, 1, 7200)


def test_interactive_job_is_rejected_with_the_reason(queuejob, pbs, make_job, run_hook):
    event = run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, make_job(interactive=1)))
    assert event.rejected
    assert event.message == "burst-agent: queue rescale takes batch jobs only: qsub -I cannot run on Rescale"


def test_job_without_a_script_is_rejected(queuejob, pbs, make_job, run_hook):
    job = make_job(executable="<jsdl-hpcpa:Executable>/bin/hostname</jsdl-hpcpa:Executable>")
    event = run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job))
    assert event.rejected
    assert "needs a job script" in event.message


def test_walltime_above_the_agent_maximum_is_rejected_naming_it(queuejob, pbs, make_job, run_hook):
    job = make_job(Resource_List={"select": pbs.select("1:ncpus=4"), "walltime": pbs.duration("200:00:00")})
    event = run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job))
    assert event.rejected
    assert event.message == ("burst-agent: time limit 200 h is above translate.max_walltime_hours (168 h)")
    assert "BURST_REQUEST_B64" not in job.Variable_List


@pytest.mark.parametrize(("select", "why"), [
    ("2:ncpus=0:ngpus=1", "ncpus=0 chunks cannot run on Rescale"),
    ("1:ncpus=4+2:ncpus=8", "select chunks of different shapes"),
    ("2:ncpus=4:mem=lots", "select mem must be a size like 16gb"),
])
def test_untranslatable_select_is_rejected_naming_why(queuejob, pbs, make_job, run_hook, select, why):
    job = make_job(Resource_List={"select": pbs.select(select)})
    event = run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job))
    assert event.rejected
    assert why in event.message


def test_job_of_another_queue_is_untouched(queuejob, pbs, make_job, run_hook):
    job = make_job(queue="workq")
    before = dict(job.Resource_List)
    event = run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job))
    assert event.accepted
    assert dict(job.Resource_List) == before
    assert job.Rerunable is None and "BURST_REQUEST_B64" not in job.Variable_List


def test_job_without_q_follows_the_servers_default_queue(queuejob, pbs, make_job, run_hook):
    job = make_job(queue=None)
    run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job), default_queue="rescale")
    assert request_of(job)["partition"] == "rescale"
    other = make_job(queue=None)
    run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, other), default_queue="workq")
    assert "BURST_REQUEST_B64" not in other.Variable_List


def test_without_burst_agent_the_job_is_accepted_with_a_server_log_warning(queuejob, pbs, make_job, run_hook):
    queuejob.burst_agent_available = lambda: False
    job = make_job(Resource_List={"select": pbs.select("1:ncpus=4"), "walltime": pbs.duration("900:00:00")})
    event = run_hook(queuejob, pbs.Event(pbs.QUEUEJOB, job))
    assert event.accepted
    assert request_of(job)["time_limit_minutes"] == 54000
    assert any(level == pbs.LOG_WARNING and "without the translate check" in m for level, m in pbs.LOG)


def test_qalter_of_a_rescale_jobs_resources_or_variables_is_refused(queuejob, pbs, make_job, run_hook):
    original = make_job()
    change = pbs.job(Resource_List={"select": pbs.select("64:ncpus=128")})
    event = run_hook(queuejob, pbs.Event(pbs.MODIFYJOB, change, job_o=original))
    assert event.rejected and "fixed at submission (select)" in event.message
    forged = pbs.job(Variable_List={"BURST_REQUEST_B64": "e30K"})
    assert run_hook(queuejob, pbs.Event(pbs.MODIFYJOB, forged, job_o=original)).rejected
    walltime = pbs.job(Resource_List={"walltime": pbs.duration("03:00:00")})
    assert run_hook(queuejob, pbs.Event(pbs.MODIFYJOB, walltime, job_o=original)).accepted


def test_qmove_out_of_rescale_is_refused_and_into_rescale_is_translated(queuejob, pbs, make_job, run_hook):
    out = run_hook(queuejob, pbs.Event(pbs.MOVEJOB, make_job(queue="workq"), src_queue="rescale"))
    assert out.rejected and "cannot move out of queue rescale" in out.message
    job = make_job()
    assert run_hook(queuejob, pbs.Event(pbs.MOVEJOB, job, src_queue=pbs.queue("workq"))).accepted
    assert request_of(job)["nodes"] == 2 and job.Resource_List["rescale_cores"] == 16


def test_shapes_from_place_pack_and_job_wide_resources(queuejob):
    packed = queuejob.resource_shape({"select": "2:ncpus=4:ngpus=1:mem=8gb", "place": "pack:excl"})
    assert (packed["nodes"], packed["ntasks_per_node"], packed["cpus_per_task"]) == (1, 2, 4)
    assert (packed["mem_per_node_mb"], packed["gpus_per_node"], packed["exclusive"]) == (16384, 2, True)
    wide = queuejob.resource_shape({"ncpus": "12", "mem": "1500mb", "ngpus": "2"})
    assert wide == {"nodes": 1, "ntasks": 1, "ntasks_per_node": 1, "cpus_per_task": 12,
                    "mem_per_node_mb": 1500, "gpus": 2}


@pytest.mark.parametrize(("text", "mb"), [("16gb", 16384), ("1025kb", 2), ("1048576", 1), ("2GB", 2048),
                                          ("1mw", 8)])
def test_pbs_sizes_become_whole_megabytes(queuejob, text, mb):
    assert queuejob.size_mb(text, "mem") == mb


@pytest.mark.parametrize(("value", "secs"), [("01:30:00", 5400), ("90:00", 5400), ("45", 45), (3601, 3601)])
def test_pbs_durations_become_seconds(queuejob, value, secs):
    assert queuejob.seconds(value) == secs
