"""Slurm scripts that call srun still run remotely: the wrapper's stand-in drops srun's options."""

from __future__ import annotations

import subprocess

from burst_agent.command_wrapper import EXIT_CODE_FILE, SCRIPT_NAME, build_command

SCRIPT = "#!/bin/bash\nsrun -n 2 --mpi=pmix -- echo step-one > one.txt\nsrun -c1 hostname > two.txt\n"


def test_srun_steps_run_without_slurm(tmp_path):
    (tmp_path / SCRIPT_NAME).write_text(SCRIPT)
    command = build_command({"SLURM_NTASKS": "1"}, ("/bin/bash",), ntasks=1, srun_shim=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "one.txt").read_text() == "step-one\n"
    assert (tmp_path / "two.txt").read_text().strip()
    assert (tmp_path / EXIT_CODE_FILE).read_text() == "0\n"


def test_pbs_jobs_get_no_srun():
    assert "srun" not in build_command({}, ("/bin/bash",), ntasks=1, nodefile=True)
