"""Every benchmark script still runs (tiny sizes) and prints its result line: the record stays rerunnable.

Only that they run and report is checked here; their figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# script, tiny arguments, a line its report must contain
RUNS = [
    ("agent_poll_bench.py", ["--jobs", "20", "--cycles", "1", "--naive-cycles", "1"], "calls per active job"),
    ("agent_scale_bench.py", ["--jobs", "200", "--window", "1"], "RSS at the end"),
    ("agent_submit_bench.py", ["--entries", "20", "--workers", "default"], "API requests per job"),
    ("download_phases.py", ["--size-mib", "8", "--repeat", "1"], "md5 thread CPU"),
    ("stageout_bench.py", ["--files", "20", "--latency-ms", "0"], "20 files x 8 KiB"),
    ("store_bench.py", ["--jobs", "200", "--fsync-sample", "5"], "restart total"),
    ("transfer_bench.py", ["--size-mib", "8", "--repeat", "1"], "strict: fastest curl round"),
    ("translate_bench.py", [], "translate_bench: 10000 scripts"),
]


def test_every_benchmark_script_is_covered():
    assert {script for script, _, _ in RUNS} == {
        p.name for p in BENCHMARKS.glob("*_bench.py")} | {"download_phases.py"}


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("script", "args", "marker"), RUNS, ids=[r[0] for r in RUNS])
def test_benchmark_runs_and_reports(script, args, marker):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=170)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert marker in done.stdout
