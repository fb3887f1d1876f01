"""Coretype selection, rules, walltime, analysis, catalogue loading and the job body."""

import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from burst_agent.command_wrapper import EXIT_CODE_FILE, NODEFILE, SCRIPT_NAME
from burst_agent.config import AnalysisRule, CoretypeRule, TranslateConfig
from burst_agent.model import CatalogueError
from burst_agent.request import TranslateError
from burst_agent.translate import load_catalogue, parse_script, translate

DATA = Path(__file__).parents[2] / "burst_agent" / "data" / "coretypes.json"
CATALOGUE = load_catalogue(json.loads(DATA.read_text()))
CFG = TranslateConfig(gpu_coretypes={"gpu-tesla": 0.125, "gpu-ampere": 1 / 12})


def run(text, cfg=CFG, **kw):
    return translate(parse_script(text), CATALOGUE, cfg, **kw)


def test_load_catalogue_accepts_paginated_object_or_list():
    items = json.loads(DATA.read_text())
    page = {"count": len(items), "next": None, "previous": None, "results": items}
    assert [c.code for c in load_catalogue(page)] == [c.code for c in load_catalogue(items)]
    with pytest.raises(CatalogueError):
        load_catalogue({"results": "nope"})


def test_cheapest_fitting_coretype_and_size():
    result = run("#!/bin/bash\n#SBATCH -N 1 -n 6 --mem=20G\nx\n")
    # nickel 8 cores x 3800 MB = 30400 MB at 0.06: cheaper than any other 8-core shape with 20 GB.
    assert (result.coretype, result.cores_per_slot, result.slots) == ("nickel", 8, 1)
    assert result.estimated_price_per_hour == Decimal("0.48")


def test_free_node_count_picks_the_cheapest_shape_keeping_tasks_whole():
    result = run("#!/bin/bash\n#SBATCH -n 10 -c 4\nx\n")
    assert result.cores_per_slot % 4 == 0 and result.cores_per_slot // 4 * result.slots >= 10
    assert result.estimated_price_per_hour == Decimal("2.40")  # 40 cores of nickel


def test_cpu_jobs_never_land_on_gpu_coretypes_and_deprecated_are_skipped():
    cheap_gpu = [*CATALOGUE]
    cfg = TranslateConfig(gpu_coretypes={"onyx": 0.5})
    assert run("#!/bin/bash\n#SBATCH -n 1\nx\n", cfg).coretype not in ("onyx", "marble")
    assert (
        translate(parse_script("#!/bin/bash\n#SBATCH --gres=gpu:1\nx\n"), cheap_gpu, cfg).coretype == "onyx"
    )


def test_gpu_jobs_need_gpu_capacity():
    assert run("#!/bin/bash\n#SBATCH -N1 --gpus-per-node=3\nx\n").cores_per_slot == 32  # tesla 32 -> 4 GPUs
    with pytest.raises(TranslateError, match="no coretype fits"):
        run("#!/bin/bash\n#SBATCH -N1 --gpus-per-node=16\nx\n")


def test_rules_first_match_wins_then_configured_coretype():
    cfg = TranslateConfig(
        coretype="carbon",
        rules=(
            CoretypeRule(coretype="aluminum", partition="big*"),
            CoretypeRule(coretype="emerald", partition="bigmem"),
            CoretypeRule(coretype="onyx", min_memory_per_core_mb=1, max_memory_per_core_mb=1000),
        ),
    )
    assert run("#!/bin/bash\n#SBATCH -p bigmem\nx\n", cfg).coretype == "aluminum"
    assert run("#!/bin/bash\n#SBATCH -n 2 --mem-per-cpu=500\nx\n", cfg).coretype == "onyx"
    assert run("#!/bin/bash\n#SBATCH -n 2\nx\n", cfg).coretype == "carbon"


def test_pinned_coretype_that_cannot_hold_the_job_is_an_error():
    with pytest.raises(TranslateError, match="'onyx' cannot hold"):
        run("#!/bin/bash\n#SBATCH -N 1 -n 64\nx\n", TranslateConfig(coretype="onyx"))
    with pytest.raises(TranslateError, match="not in the catalogue"):
        run("#!/bin/bash\nx\n", TranslateConfig(coretype="nope"))


@pytest.mark.parametrize(("time", "hours"), [("1", 1), ("60", 1), ("61", 2), ("1-00", 24), ("2:30:00", 3)])
def test_walltime_is_whole_hours_at_least_the_request(time, hours):
    assert run(f"#!/bin/bash\n#SBATCH -t {time}\nx\n").body["jobanalyses"][0]["hardware"]["walltime"] == hours


def test_walltime_default_maximum_and_unlimited():
    cfg = TranslateConfig(default_walltime_hours=2.5, max_walltime_hours=48)
    assert run("#!/bin/bash\nx\n", cfg).walltime_hours == 3
    assert run("#!/bin/bash\n#SBATCH -t UNLIMITED\nx\n", cfg).walltime_hours == 48
    with pytest.raises(TranslateError) as info:
        run("#!/bin/bash\n#SBATCH -n 1\n#SBATCH -t 3-00\nx\n", cfg)
    assert (info.value.line, info.value.directive) == (3, "#SBATCH -t 3-00")


def test_analysis_from_module_rules():
    cfg = TranslateConfig(
        analyses=(
            AnalysisRule(module="ansys*", code="ansys_fluent"),
            AnalysisRule(module="openfoam/*", code="openfoam", version="v2306"),
        )
    )
    assert run("#!/bin/bash\nmodule load openfoam/11\nx\n", cfg).analysis == ("openfoam", "v2306")
    assert run("#!/bin/bash\nmodule load ansys/2023R1\nx\n", cfg).analysis == ("ansys_fluent", "2023R1")
    assert run("#!/bin/bash\nmodule load gcc/12\nx\n", cfg).analysis == ("user_included", "0")


def test_body_shape_follows_the_create_job_doc():
    body = run(
        "#!/bin/bash\n#SBATCH -J demo --export=A=1\nx\n",
        input_file_ids=["abc", {"id": "t", "decompress": True}],
        env={"SITE": "x"},
    ).body
    assert set(body) == {"name", "billingPriorityValue", "jobanalyses"} and body["name"] == "demo"
    assert body["billingPriorityValue"] == "INSTANT"  # the default tier, on-demand-priority
    ja = body["jobanalyses"][0]
    assert set(ja) == {"analysis", "command", "hardware", "inputFiles", "envVars"}
    assert set(ja["hardware"]) == {"coreType", "coresPerSlot", "slots", "walltime"}
    assert ja["inputFiles"] == [{"id": "abc"}, {"id": "t"}]  # no undocumented `decompress` for job inputs
    assert ja["envVars"] == {"A": "1", "SITE": "x"}


def _run_remote(tmp_path, script, body):
    (tmp_path / SCRIPT_NAME).write_text(script)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        ["bash", "-c", body["jobanalyses"][0]["command"]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc


def test_remote_command_runs_the_script_with_scheduler_env_and_keeps_the_exit_code(tmp_path):
    script = (
        "#!/bin/bash\n#SBATCH -n 3 -c 2 -J 'x y'\necho \"$SLURM_JOB_ID|$SLURM_JOB_NAME|$SLURM_NTASKS|"
        '$OMP_NUM_THREADS|$SLURM_SUBMIT_DIR"\nexit 7\n'
    )
    proc = _run_remote(tmp_path, script, run(script, job_ids={"job_id": "123"}).body)
    assert proc.returncode == 7
    assert proc.stdout.strip() == f"123|x y|3|2|{tmp_path}"
    assert (tmp_path / EXIT_CODE_FILE).read_text().strip() == "7"


def test_remote_command_writes_the_pbs_nodefile(tmp_path):
    script = "#!/bin/bash\n#PBS -l select=1:ncpus=2:mpiprocs=2\nwc -l < $PBS_NODEFILE; echo $PBS_O_WORKDIR\n"
    proc = _run_remote(tmp_path, script, run(script).body)
    assert proc.returncode == 0 and proc.stdout.split() == ["2", str(tmp_path)]
    assert (tmp_path / NODEFILE).exists() and (tmp_path / EXIT_CODE_FILE).read_text() == "0\n"
