"""One Dialect record per scheduler: the registry, its lookups, and the environment built from a record."""

import ast
from pathlib import Path

import pytest

from burst_agent.command_wrapper import SchedulerEnv, Value, scheduler_environment
from burst_agent.dialects import DIALECTS, dialect, dialect_of_env, parse_script
from burst_agent.dialects.registry import CARRIED_NAMES
from burst_agent.request import JobRequest, TranslateError

DIALECTS_DIR = Path(__file__).resolve().parents[2] / "burst_agent" / "dialects"


def test_every_scheduler_has_one_record_with_its_default_output_file():
    stdout = {name: d.default_stdout for name, d in DIALECTS.items()}
    assert stdout == {"slurm": "slurm-%j.out", "pbs": "%x.o%j", "plain": "output.log"}
    assert all(d.name == name for name, d in DIALECTS.items())
    assert dialect("pbs") is DIALECTS["pbs"]
    with pytest.raises(KeyError):
        dialect("lsf")


def test_a_real_jobs_id_variable_names_its_scheduler():
    assert dialect_of_env({"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "x"}) is DIALECTS["slurm"]
    assert dialect_of_env({"PBS_JOBID": ""}) is DIALECTS["pbs"]  # present is enough, as in intake
    assert dialect_of_env({"SLURM_ARRAY_TASK_ID": "1"}) is None
    assert dialect_of_env({}) is None


def test_a_scheduler_exports_and_carries_the_job_id_variable_the_relay_reads():
    for d in DIALECTS.values():
        if d.job_id_var is not None:
            assert d.job_id_var in d.env.carried
            assert d.job_id_var in dict(d.env.every_job)
    assert DIALECTS["plain"].job_id_var is None and not DIALECTS["plain"].env.carried
    assert {"SLURM_JOB_ID", "PBS_ARRAYID"} <= CARRIED_NAMES


def test_only_the_schedulers_with_directives_can_be_asked_for():
    assert DIALECTS["plain"].directives is None
    with pytest.raises(TranslateError, match="expected one of auto, slurm, pbs"):
        parse_script("#!/bin/bash\n", scheduler="plain")


def test_the_environment_follows_the_table_and_a_carried_value_wins_in_place():
    env = SchedulerEnv(every_job=(("ID", Value.JOB_ID), ("MODE", "BATCH"), ("Q", Value.PARTITION)),
                       array_task=(("TASK", Value.ARRAY_TASK_ID),), carried=("Q",))
    req = JobRequest(partition=None, scheduler_env={"Q": "real", "OTHER": "x"})
    got = scheduler_environment(req, env, slots=1, cores_per_slot=2, job_id="9", job_name="n")
    assert list(got.items()) == [("ID", "9"), ("MODE", "BATCH"), ("Q", "real")]
    task = scheduler_environment(JobRequest(array_task_id=3), env, slots=1, cores_per_slot=2, job_id="9",
                                 job_name="n")
    assert task["TASK"] == "3" and "TASK" not in got


def _imported(path: Path) -> set[str]:
    """Every module an import names; `from a import b` counts as both a and a.b."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update({node.module, *(f"{node.module}.{alias.name}" for alias in node.names)})
    return names


def test_no_dialect_module_imports_another_dialect():
    assert "burst_agent.dialects.slurm" not in _imported(DIALECTS_DIR / "pbs.py")
    assert "burst_agent.dialects.pbs" not in _imported(DIALECTS_DIR / "slurm.py")
    assert "burst_agent.dialects.slurm" in _imported(DIALECTS_DIR / "registry.py")  # the check can see one
