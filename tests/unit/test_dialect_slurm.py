"""#SBATCH parsing: option forms, counts, memory, GPUs, prologue rules, warnings and errors."""

import pytest

from burst_agent.dialects import parse_script
from burst_agent.request import TranslateError


def req(*directives, **kw):
    text = "#!/bin/bash\n" + "".join(f"#SBATCH {d}\n" for d in directives) + "srun ./app\n"
    return parse_script(text, scheduler="slurm", **kw).request


@pytest.mark.parametrize("directive", ["--nodes=3", "--nodes 3", "-N3", "-N 3", "-N 3-8", "--nodes=3-3"])
def test_node_option_forms(directive):
    assert req(directive).nodes == 3


def test_several_options_on_one_line_and_trailing_comment():
    r = req("-N 2 --ntasks-per-node=4 -c2 --mem=8G # two nodes")
    assert (r.nodes, r.ntasks, r.ntasks_per_node, r.cpus_per_task, r.mem_per_node_mb) == (2, 8, 4, 2, 8192)


def test_repeated_options_last_wins_and_quotes():
    r = req("-J 'a b'", '--job-name="c d"', "-t 10", "--time=20")
    assert (r.job_name, r.walltime_seconds) == ("c d", 1200)


@pytest.mark.parametrize(
    ("directives", "shape"),
    [
        (["-n 8"], (None, 8, None)),
        (["-N 2"], (2, 2, 1)),
        (["-N 2", "-n 5"], (2, 5, 3)),
        (["-n 10", "--ntasks-per-node=4"], (3, 10, 4)),
        (["--tasks-per-node=6"], (1, 6, 6)),
        ([], (None, 1, None)),
    ],
)
def test_counts_are_derived_from_whatever_is_given(directives, shape):
    r = req(*directives)
    assert (r.nodes, r.ntasks, r.ntasks_per_node) == shape


@pytest.mark.parametrize(
    "directives",
    [["-N 4", "-n 2"], ["-N 2", "-n 9", "--ntasks-per-node=4"], ["--gpus=4", "--gpus-per-task=1"]],
)
def test_conflicting_counts_are_errors(directives):
    with pytest.raises(TranslateError, match="conflicting"):
        req(*directives)


def test_memory_forms():
    assert req("-N 2", "--ntasks-per-node=4", "--mem-per-cpu=1G").mem_per_node_mb == 4096
    assert req("-n 4", "--mem-per-cpu=1500").mem_per_cpu_mb == 1500
    assert req("--mem=0").whole_node_memory is True
    assert req("-N1", "--gres=gpu:2", "--mem-per-gpu=10G").mem_per_node_mb == 20480


@pytest.mark.parametrize(
    ("directive", "field", "value"),
    [
        ("--gres=gpu:2", "gpus_per_node", 2),
        ("--gres=gpu:a100:4", "gpus_per_node", 4),
        ("--gres=gpu", "gpus_per_node", 1),
        ("--gpus=3", "gpus_total", 3),
        ("-G a100:2", "gpus_total", 2),
        ("--gpus-per-node=2", "gpus_per_node", 2),
        ("--gpus-per-task=1", "gpus_per_task", 1),
    ],
)
def test_gpu_forms(directive, field, value):
    assert getattr(req(directive), field) == value


def test_gpus_per_task_become_per_node_when_nodes_are_fixed():
    assert req("-N 2", "--ntasks-per-node=4", "--gpus-per-task=1").gpus_per_node == 4


def test_metadata_options():
    r = req(
        "-A proj",
        "-p rescale",
        "-C 'ib&avx'",
        "-o out-%j.log",
        "-e err-%j.log",
        "-D /scratch/x",
        "--array=0-7%2",
        "--export='ALL,A=1,B=two words'",
    )
    assert (r.account, r.partition, r.constraint, r.stdout, r.stderr, r.workdir) == (
        "proj",
        "rescale",
        "ib&avx",
        "out-%j.log",
        "err-%j.log",
        "/scratch/x",
    )
    assert (r.array, r.array_task_id, r.environment) == ("0-7%2", 0, {"A": "1", "B": "two words"})


def test_parsing_stops_at_the_first_command_and_look_alikes_are_comments():
    text = (
        "#!/bin/bash\n\n# comment\n##SBATCH -N 9\n# SBATCH -N 9\n#SBatch -N 9\n#SBATCH -N 2\n"
        "echo\n#SBATCH -N 5\n"
    )
    parsed = parse_script(text)
    assert parsed.request.nodes == 2
    assert [w.line for w in parsed.warnings] == [9]


@pytest.mark.parametrize(
    ("directive", "why"),
    [
        ("--time=1:2:3:4", "invalid time"),
        ("--mem=1X", "invalid memory"),
        ("-N 0", "at least 1"),
        ("-n -3", "whole number"),
        ("-c two", "whole number"),
        ("--nodes=4-2", "empty"),
        ("--gpus=x", "GPU"),
        ("-J 'open", "cannot split"),
        ("--ntasks", "needs a value"),
        ("--array=x", "array"),
    ],
)
def test_invalid_values_are_errors_with_line_and_directive(directive, why):
    with pytest.raises(TranslateError, match=why) as info:
        req("-J ok", directive)
    assert (info.value.line, info.value.directive) == (3, f"#SBATCH {directive}")
    assert info.value.render("job.sh").startswith(f"job.sh:3: #SBATCH {directive}: ")


def test_unknown_and_unmappable_options_warn_without_changing_the_shape():
    parsed = parse_script("#!/bin/bash\n#SBATCH -n 4 --mail-type=ALL --frobnicate=1 -w n01 --wckey=hi\nx\n")
    assert parsed.request.ntasks == 4 and parsed.request.nodes is None
    assert len(parsed.warnings) == 4 and all(w.line == 2 for w in parsed.warnings)


def test_request_file_wins_over_the_script():
    r = req(
        "-N 1",
        "-n 4",
        "--mem=4G",
        "-t 10",
        request_overrides={
            "nodes": 2,
            "ntasks": 8,
            "mem_per_cpu_mb": 100,
            "time_limit_minutes": 60,
            "job_id": "77",
            "ntasks_per_node": None,
        },
    )
    assert (r.nodes, r.ntasks, r.ntasks_per_node, r.mem_per_node_mb, r.walltime_seconds, r.job_id) == (
        2,
        8,
        4,
        400,
        3600,
        "77",
    )


@pytest.mark.parametrize(
    "overrides", [{"nodes": 0}, {"nodes": "2"}, {"bogus": 1}, {"environment": {"A": 1}}, []]
)
def test_bad_request_files_are_errors(overrides):
    with pytest.raises(TranslateError):
        req("-n 1", request_overrides=overrides)


def test_module_loads_and_interpreter():
    parsed = parse_script("#!/usr/bin/env python3\n#SBATCH -n 1\nimport os\n")
    assert parsed.interpreter == ("/usr/bin/env", "python3")
    parsed = parse_script("#!/bin/bash\nmodule load gcc/12 openfoam/9 # x\nml lammps/2023\n")
    assert parsed.modules == ("gcc/12", "openfoam/9", "lammps/2023")
