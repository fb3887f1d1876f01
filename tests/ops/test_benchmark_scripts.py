"""Every benchmark script still runs (tiny sizes) and prints its result line: the record stays rerunnable.

Only that they run and report is checked here; their figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their helpers as top-level modules

import agentbench  # noqa: E402
import finish_latency_bench  # noqa: E402

# script, tiny arguments, a line its report must contain
RUNS = [
    ("agent_poll_bench.py", ["--jobs", "20", "--cycles", "1", "--naive-cycles", "1"], "calls per active job"),
    ("agent_scale_bench.py", ["--jobs", "200", "--window", "1"], "RSS at the end"),
    ("agent_submit_bench.py", ["--entries", "20", "--workers", "default"], "API requests per job"),
    ("download_phases.py", ["--size-mib", "8", "--repeat", "1"], "md5 thread CPU"),
    ("finish_latency_bench.py",
     ["--entries", "20", "--poll-interval", "5", "--max-s", "60", "--min-backlog", "0"], "target p99 total"),
    ("stageout_bench.py", ["--files", "20", "--latency-ms", "0"], "20 files x 8 KiB"),
    ("store_bench.py", ["--jobs", "200", "--fsync-sample", "5"], "restart total"),
    ("tail_budget.py", ["--jobs", "50"], "steady hour"),
    ("transfer_bench.py", ["--size-mib", "8", "--repeat", "1"], "strict: fastest curl round"),
    ("translate_bench.py", [], "translate_bench: 10000 scripts"),
]


def test_every_benchmark_script_is_covered():
    assert {script for script, _, _ in RUNS} == {
        p.name for p in BENCHMARKS.glob("*_bench.py")} | {"download_phases.py", "tail_budget.py"}


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("script", "args", "marker"), RUNS, ids=[r[0] for r in RUNS])
def test_benchmark_runs_and_reports(script, args, marker):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=170)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert marker in done.stdout


def test_budget_scale_multiplies_every_hourly_limit_and_keeps_bursts():
    limits = agentbench.scaled_rate_limits(60)
    assert (limits.job_submission_per_hour, limits.jobs_usage_per_hour) == (60_000, 5_400_000)
    assert (limits.file_access_per_hour, limits.user_per_hour, limits.billing_per_hour) == (432_000,) * 3
    assert (limits.job_submission_burst, limits.enabled) == (50, True)


def test_no_budget_scale_lifts_the_budgets():
    assert agentbench.rate_limits_config(None) == {"enabled": False}
    assert agentbench.scaled_rate_limits(None).enabled is False


def test_a_scaled_rate_is_converted_back_to_real_time():
    assert agentbench.real_per_hour(1000, 70.0, 60) == pytest.approx(857.14, abs=0.01)
    assert agentbench.real_per_hour(10, 36.0, None) == pytest.approx(1000.0)


@pytest.mark.parametrize("text", ["0", "-2", "inf", "nan", "fast"])
def test_a_budget_scale_must_be_a_positive_number_or_lifted(text):
    assert agentbench.parse_budget_scale("lifted") is None
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        agentbench.parse_budget_scale(text)


def test_finish_latency_percentiles_and_backlog():
    assert finish_latency_bench.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert finish_latency_bench.percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert finish_latency_bench.backlog_at([1.0, 2.0, 3.0], 10, 2.0) == 8
