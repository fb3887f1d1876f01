"""#PBS parsing: select chunks, Torque nodes, job-wide resources, options, prologue and errors."""

import pytest

from burst_agent.dialects import parse_script
from burst_agent.request import TranslateError


def parsed(*directives, **kw):
    text = "#!/bin/bash\n" + "".join(f"#PBS {d}\n" for d in directives) + "mpiexec ./app\n"
    return parse_script(text, **kw)


def req(*directives, **kw):
    return parsed(*directives, **kw).request


def test_select_chunk_maps_to_nodes_tasks_threads_memory_and_gpus():
    r = req("-l select=3:ncpus=8:mpiprocs=2:ompthreads=4:mem=16gb:ngpus=1")
    assert (r.nodes, r.ntasks, r.ntasks_per_node, r.cpus_per_task) == (3, 6, 2, 4)
    assert (r.omp_threads, r.mem_per_node_mb, r.gpus_per_node) == (4, 16384, 1)


def test_select_without_mpiprocs_is_one_process_per_chunk():
    r = req("-l select=2:ncpus=16")
    assert (r.nodes, r.ntasks, r.cpus_per_task, r.omp_threads) == (2, 2, 16, 16)


def test_job_wide_resources_and_several_per_l():
    r = req("-l ncpus=4,mem=8gb,walltime=1:00:00", "-l ngpus=1")
    assert (r.nodes, r.ntasks, r.cpus_per_task, r.mem_per_node_mb, r.gpus_per_node) == (1, 1, 4, 8192, 1)
    assert r.walltime_seconds == 3600


def test_torque_nodes_ppn_mem_per_job_and_pmem():
    r = req("-l nodes=2:ppn=8", "-l mem=32gb")
    assert (r.nodes, r.ntasks, r.ntasks_per_node, r.mem_per_node_mb) == (2, 16, 8, 16384)
    assert req("-l nodes=4").ntasks_per_node == 1
    assert req("-l nodes=1:ppn=4", "-l pmem=1gb").mem_per_node_mb == 4096


def test_procs_leaves_nodes_free():
    r = req("-l procs=12", "-l mem=24gb")
    assert (r.nodes, r.ntasks, r.mem_per_cpu_mb) == (None, 12, 2048)


def test_place_pack_puts_all_chunks_on_one_node():
    r = req("-l select=2:ncpus=4:mem=2gb", "-l place=pack:excl")
    assert (r.nodes, r.ntasks_per_node, r.cpus_per_task, r.mem_per_node_mb, r.exclusive) == (
        1,
        2,
        4,
        4096,
        True,
    )


def test_options_and_leading_whitespace():
    text = (
        "#!/bin/bash\n   #PBS -N run -q work@srv -A acct -j oe\n\t#PBS -o host:/home/u/out.log\n"
        "#PBS -J 1-9:2 -v A=1,B=2\n#PBS -S /bin/sh\n./app\n#PBS -N late\n"
    )
    p = parse_script(text)
    r = p.request
    assert (p.scheduler, r.job_name, r.partition, r.account, r.join_output, r.stdout) == (
        "pbs",
        "run",
        "work",
        "acct",
        True,
        "/home/u/out.log",
    )
    assert (r.array, r.array_task_id, r.environment, p.interpreter) == (
        "1-9:2",
        1,
        {"A": "1", "B": "2"},
        ("/bin/sh",),
    )
    assert p.warnings[-1].line == 7


def test_site_resources_and_mail_warn():
    p = parsed("-l select=1:ncpus=2:model=skylake", "-m abe", "-l software=ansys", "-W depend=afterok:1")
    assert p.request.cpus_per_task == 2
    assert [w.line for w in p.warnings] == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("directive", "why"),
    [
        ("-l walltime=soon", "invalid time"),
        ("-l mem=1zb", "invalid memory"),
        ("-l select=0:ncpus=2", "at least"),
        ("-l select=1:ncpus=x", "whole number"),
        ("-l select=1:ncpus=2+1:ncpus=4", "different shapes"),
        ("-l nodes=2:ppn=0", "at least"),
        ("-j xx", "join"),
        ("-l", "needs a value"),
    ],
)
def test_invalid_values_are_errors(directive, why):
    with pytest.raises(TranslateError, match=why) as info:
        req("-N ok", directive)
    assert info.value.line == 3


@pytest.mark.parametrize(
    "pair",
    [
        ("-l select=1:ncpus=2", "-l ncpus=4"),
        ("-l select=1:ncpus=2", "-l nodes=1"),
        ("-l select=1:ncpus=2:mem=1gb", "-l mem=2gb"),
    ],
)
def test_conflicts_are_errors(pair):
    with pytest.raises(TranslateError, match=r"conflict|both"):
        req(*pair)


def test_auto_detection_and_mixed_dialects():
    assert parse_script("#PBS -l ncpus=2\n./x\n").scheduler == "pbs"
    assert parse_script("#SBATCH -n 2\n./x\n").scheduler == "slurm"
    with pytest.raises(TranslateError, match="both"):
        parse_script("#SBATCH -n 2\n#PBS -l ncpus=2\n./x\n")
    assert parse_script("#SBATCH -n 2\n#PBS -l ncpus=2\n./x\n", scheduler="pbs").request.cpus_per_task == 2
