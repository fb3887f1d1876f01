"""The remote job sees the scheduler variables the real Slurm/PBS job had, carried by the relay."""

import json
import shlex
from pathlib import Path

import pytest

from burst_agent.config import TranslateConfig
from burst_agent.planning import output_paths, scheduler_of
from burst_agent.relay import complete_request
from burst_agent.request import JobRequest, TranslateError
from burst_agent.translate import load_catalogue, parse_script, translate

DATA = Path(__file__).parents[2] / "burst_agent" / "data" / "coretypes.json"
CATALOGUE = load_catalogue(json.loads(DATA.read_text()))
SLURM_TASK = {  # task 1 of `sbatch --array=1-3` (array job 40): what Slurm sets in the task's environment
    "SLURM_JOB_ID": "41", "SLURM_JOBID": "41", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "1",
    "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "3",
    "SLURM_ARRAY_TASK_STEP": "1", "SLURM_JOB_NAME": "sweep", "SLURM_JOB_ACCOUNT": "physics",
    "SLURM_JOB_PARTITION": "rescale",
}
PBS_TASK = {"PBS_JOBID": "77[2].pbs01", "PBS_JOBNAME": "sweep", "PBS_ARRAY_ID": "77[].pbs01",
            "PBS_ARRAY_INDEX": "2", "PBS_QUEUE": "rescale", "PBS_O_QUEUE": "workq"}
PROXY_SHAPE = {"SLURM_NTASKS": "1", "SLURM_CPUS_ON_NODE": "1", "SLURM_SUBMIT_DIR": "/home/u/case"}


def _exports(script: str, environ: dict[str, str]) -> dict[str, str]:
    """The variables the remote command exports for a relay job started in `environ`."""
    request = complete_request({"workdir": "/home/u/case"}, environ, Path("/"))
    parsed = parse_script(script, scheduler=scheduler_of(request), request_overrides=request)
    command = translate(parsed, CATALOGUE, TranslateConfig()).body["jobanalyses"][0]["command"]
    export = next(line for line in command.splitlines() if line.startswith("export "))
    return dict(word.split("=", 1) for word in shlex.split(export)[1:])


def test_every_slurm_identity_variable_has_the_value_slurm_gave():
    exports = _exports("#!/bin/bash\n#SBATCH --array=1-3 -n 4\nsrun x\n", {**SLURM_TASK, **PROXY_SHAPE})
    assert {name: exports.get(name) for name in SLURM_TASK} == SLURM_TASK
    # Not carried: the relay's own one-cpu proxy allocation, and the local submit dir (the remote
    # command's variables name the remote workdir, so `cd $SLURM_SUBMIT_DIR` works there).
    assert (exports["SLURM_NTASKS"], exports["SLURM_SUBMIT_DIR"]) == ("4", "$PWD")


def test_every_pbs_identity_variable_has_the_value_pbs_gave():
    exports = _exports("#!/bin/bash\n#PBS -J 1-3\nx\n", PBS_TASK)
    assert {name: exports.get(name) for name in PBS_TASK} == PBS_TASK


def test_a_pbs_job_without_pbs_directives_still_gets_its_pbs_variables():
    exports = _exports("#!/bin/bash\nx\n", PBS_TASK)
    assert exports["PBS_JOBID"] == "77[2].pbs01" and "SLURM_JOB_ID" not in exports


def test_a_request_file_may_carry_only_scheduler_variables():
    overrides = {"scheduler_env": {"LD_PRELOAD": "/tmp/x.so"}}
    with pytest.raises(TranslateError, match="scheduler_env: 'LD_PRELOAD' is not a scheduler variable"):
        parse_script("#!/bin/bash\nx\n", request_overrides=overrides)


def test_an_array_tasks_output_pattern_gets_the_real_array_job_id():
    req = JobRequest(workdir="/w", job_id="41", array_task_id=1, stdout="slurm-%A_%a.out",
                     scheduler_env={"SLURM_ARRAY_JOB_ID": "40"})
    assert output_paths(None, "slurm", req, "ana")[1] == "/w/slurm-40_1.out"


def test_the_account_slurm_charged_is_the_jobs_account_when_the_script_named_none():
    request = complete_request({"workdir": "/w"}, SLURM_TASK, Path("/"))
    assert request["account"] == "physics"  # Slurm's default for the user, not given to sbatch
    assert complete_request({"workdir": "/w", "account": "chem"}, SLURM_TASK, Path("/"))["account"] == "chem"
