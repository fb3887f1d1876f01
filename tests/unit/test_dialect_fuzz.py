"""Fuzz: for any text the parser returns a request or raises TranslateError, nothing else.

BURST_FUZZ_EXAMPLES=100000 pytest tests/unit/test_dialect_fuzz.py  runs a long campaign.
"""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst_agent.config import TranslateConfig
from burst_agent.dialects import parse_script
from burst_agent.request import JobRequest, TranslateError
from burst_agent.translate import load_catalogue, translate

# Few by default: tests/badinput/test_fuzz_long.py fuzzes the same parse-and-translate property (a superset
# of these inputs: any text, directive-shaped text, request files) with 2,000 examples.
EXAMPLES = int(os.environ.get("BURST_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CATALOGUE = load_catalogue([
    {"code": "cpu", "cores": [1, 4, 16], "memory": 4000, "price": 0.1},
    {"code": "gpu-x", "cores": [8, 32], "memory": 8000, "price": 0.5},
])
CFG = TranslateConfig(gpu_coretypes={"gpu-x": 0.125}, max_walltime_hours=10**6)

PREFIXES = st.sampled_from(["#SBATCH ", "#PBS ", "  #PBS ", "#SBATCH", "##SBATCH ", "# ", "", "#!"])
WORDS = st.sampled_from([
    "-N", "-n", "-c", "-t", "--mem=", "--mem-per-cpu=", "--gres=gpu:", "--gpus=", "--time=", "-l",
    "select=", "nodes=", "ncpus=", "mem=", "walltime=", "ppn=", ":", "+", ",", "=", "-", "'", '"', "#",
    "1", "0", "2-4", "16", "4G", "8gb", "1:00:00", "1-00", "UNLIMITED", "--array=", "-J", "-q", "--export=",
    "A=1", "-j", "oe", "-V", "--ntasks-per-node=", "--exclusive", "--mem-per-gpu=", "place=pack", "\t",
])
LINE = st.tuples(PREFIXES, st.lists(st.one_of(WORDS, st.text(max_size=6)), max_size=8)).map(
    lambda t: t[0] + " ".join(t[1]))
SCRIPT = st.lists(LINE, max_size=12).map("\n".join)


def _check(text, scheduler, overrides=None):
    try:
        parsed = parse_script(text, scheduler=scheduler, request_overrides=overrides)
    except TranslateError as exc:
        assert isinstance(exc.render("f"), str)
        return
    assert isinstance(parsed.request, JobRequest)
    try:
        result = translate(parsed, CATALOGUE, CFG)
    except TranslateError:
        return
    assert result.slots >= 1 and result.cores_per_slot >= 1


@FUZZ
@given(st.text(), st.sampled_from(["auto", "slurm", "pbs"]))
def test_arbitrary_text(text, scheduler):
    _check(text, scheduler)


@FUZZ
@given(SCRIPT, st.sampled_from(["auto", "slurm", "pbs"]))
def test_directive_shaped_text(text, scheduler):
    _check(text, scheduler)


@FUZZ
@given(SCRIPT, st.dictionaries(st.sampled_from(["nodes", "ntasks", "ntasks_per_node", "cpus_per_task",
                                                 "mem_per_node_mb", "gpus", "time_limit_minutes", "job_id",
                                                 "environment", "other"]),
                                st.one_of(st.none(), st.integers(-2, 50), st.text(max_size=4),
                                          st.dictionaries(st.text(max_size=3), st.text(max_size=3)))))
def test_directive_shaped_text_with_request_file(text, overrides):
    _check(text, "slurm", overrides)
