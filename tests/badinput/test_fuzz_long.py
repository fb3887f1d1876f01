"""Fuzz the directive parser (and translation): any script text and request give a result or a TranslateError.

Default: BURST_FUZZ_EXAMPLES examples (2,000). Long run (docs/bad-input.md):
    BURST_FUZZ_EXAMPLES=100000 .venv/bin/pytest -q tests/badinput/test_fuzz_long.py
"""

from __future__ import annotations

import json
import os
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst_agent.config import TranslateConfig
from burst_agent.dialects import parse_script
from burst_agent.dialects.overrides import REQUEST_FILE_KEYS
from burst_agent.request import JobRequest, TranslateError
from burst_agent.translate import load_catalogue, translate

EXAMPLES = int(os.environ.get("BURST_FUZZ_EXAMPLES", "2000"))
# A long campaign outlasts the suite's 300 s per-test timeout.
pytestmark = pytest.mark.timeout(0 if EXAMPLES > 10_000 else 300)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CATALOGUE = load_catalogue(json.loads(files("burst_agent.data").joinpath("coretypes.json").read_text()))
CFG = TranslateConfig()
SQLITE_INT_MAX = 2**63 - 1

# Every character, surrogates included (a str decoded with surrogateescape carries them).
ANY_CHAR = st.characters(blacklist_categories=())
PREFIX = st.sampled_from(["#SBATCH ", "#SBATCH\t", "#PBS ", " #PBS ", "#SBATCH", "#!/bin/bash", "#!", "",
                          "\ufeff", "#SBATCH --", "#PBS -l "])
NUMBER = st.one_of(st.integers(), st.integers(-2, 70), st.sampled_from(["1e9", "0x10", "99999999999999999999",
                                                                        "-0", "+3", "1.5", "nan", "inf"]))
WORD = st.one_of(
    st.sampled_from([
        "-N", "-n", "-c", "-t", "-G", "--mem", "--mem=", "--mem-per-cpu=", "--mem-per-gpu=", "--gres=gpu:",
        "--gpus=", "--gpus-per-node=", "--gpus-per-task=", "--time=", "--array=", "--export=", "--exclusive",
        "--ntasks-per-node=", "--cpus-per-task=", "-J", "-o", "-e", "-D", "-A", "-p", "-C", "-l", "select=",
        "nodes=", "ncpus=", "mpiprocs=", "ompthreads=", "mem=", "walltime=", "ngpus=", "ppn=", "place=", "-j",
        "oe", "-V", "-v", "-S", "-q", "-N", "-W", ":", "+", ",", "=", "-", "'", '"', "\\", "#", "%j", "%x",
        "K", "M", "G", "T", "P", "gb", "mb", "UNLIMITED", "infinite", "1-00:00:00", "00:00:01", "\r", "\t",
    ]),
    NUMBER.map(str),
    st.text(ANY_CHAR, max_size=6),
)
LINE = st.tuples(PREFIX, st.lists(WORD, max_size=8), st.sampled_from(["", " ", "="])).map(
    lambda t: t[0] + t[2].join(t[1]))
SHAPED = st.lists(st.one_of(LINE, st.text(ANY_CHAR, max_size=20)), max_size=16).map(
    lambda lines: "\n".join(lines))
TEXT = st.one_of(SHAPED, st.text(ANY_CHAR), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")))
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(ANY_CHAR, max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
OVERRIDES = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(sorted(REQUEST_FILE_KEYS)), JSONISH, max_size=5),
    st.dictionaries(st.text(max_size=6), JSONISH, max_size=2),
    JSONISH,
)


@FUZZ
@given(TEXT, st.sampled_from(["auto", "slurm", "pbs"]), OVERRIDES)
def test_parser_and_translation_never_crash(text: str, scheduler: str, overrides: Any) -> None:
    try:
        parsed = parse_script(text, scheduler=scheduler, request_overrides=overrides)
    except TranslateError as exc:
        assert exc.render("fuzz")
        return
    assert isinstance(parsed.request, JobRequest)
    for warning in parsed.warnings:
        assert warning.render("fuzz")
    try:
        result = translate(parsed, CATALOGUE, CFG)
    except TranslateError as exc:
        assert exc.render("fuzz")
        return
    assert result.slots >= 1 and result.cores_per_slot >= 1


def test_translation_refuses_counts_the_job_store_cannot_hold() -> None:
    """The agent stores `slots` in SQLite; a count past 2**63-1 wedged the job in a retry loop."""
    text = "#!/bin/bash\n#SBATCH -n 99999999999999999999999\necho x\n"
    try:
        result = translate(parse_script(text), CATALOGUE, CFG)
    except TranslateError:
        return
    assert result.slots <= SQLITE_INT_MAX, (
        f"BUG: translate accepted {result.slots} slots; store.transition then raises OverflowError and the "
        "job retries forever instead of failing with a reason")


def test_utf8_byte_order_mark_does_not_silently_drop_directives() -> None:
    text = "\ufeff#!/bin/bash\n#SBATCH -N 4\necho x\n"
    try:
        parsed = parse_script(text)
    except TranslateError:
        return
    assert parsed.request.nodes == 4, (
        "BUG: a UTF-8 BOM before #! makes every #SBATCH line 'after the first command': the job runs with "
        "default resources (sbatch refuses such a script)")
