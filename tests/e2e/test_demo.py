"""The README's first command keeps working: `burst-agent demo` runs every example and checks it."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_every_example_as_expected(tmp_path):
    done = subprocess.run([sys.executable, "-m", "burst_agent.cli", "demo", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo OK" in done.stdout
    for example in ("mpi_hello.sbatch", "wordcount.sbatch", "fails_exit3.sbatch", "openmp.pbs"):
        assert example in done.stdout
    assert (tmp_path / "work" / "with-inputs" / "results" / "counts.txt").read_text().startswith("fox.txt 9")
