"""Users submit with real sbatch; jobs run on the emulated Rescale through the relay and the agent."""

from __future__ import annotations

import json
import subprocess
import time

from conftest import AGENT, RUNUSER, USER_ENV
from waiting import wait_until

ECHO = (
    "#!/bin/bash\n#SBATCH -J e2e\n#SBATCH -n 2\n"
    "echo remote-line-1 ntasks=$SLURM_NTASKS\ncat in.txt > out.txt\n"
)


def remote_jobs(emulator, slurm_job_id: str) -> list:
    """The emulated Rescale jobs made for this Slurm job (its id is exported in the remote command)."""
    marker = f"SLURM_JOB_ID={slurm_job_id} "
    with emulator.store.lock:
        return [job for job in emulator.store.jobs.values() if marker in job.analyses[0]["command"]]


def test_success_completes_with_outputs_owned_by_the_user(slurm, user_a, emulator):
    user_a.write("in.txt", "payload\n")
    user_a.write("job.sh", ECHO)
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    fields = slurm.wait_job(job_id, timeout=90)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0")
    out = user_a.path / "out.txt"
    assert out.read_text() == "payload\n" and out.owner() == "burstuser_a"
    assert "remote-line-1 ntasks=2" in slurm.wait_file(user_a.path / f"slurm-{job_id}.out")


def test_exit_code_3_fails_the_slurm_job_with_it(slurm, user_a):
    user_a.write("job.sh", "#!/bin/bash\necho failing\nexit 3\n")
    fields = slurm.wait_job(slurm.sbatch(user_a, "job.sh", "--partition=rescale"), timeout=90)
    assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "3:0")


def test_scancel_stops_the_remote_job(slurm, user_a, emulator):
    user_a.write("job.sh", "#!/bin/bash\necho started\nsleep 300\n")
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    jobs = wait_until(lambda: [j for j in remote_jobs(emulator, job_id) if j.status == "Executing"], 60,
                    "the remote job executing")
    assert subprocess.run(["scancel", job_id], timeout=20).returncode == 0
    wait_until(lambda: jobs[0].stop_mode, 30, "the remote stop request")
    assert slurm.wait_job(job_id, timeout=60)["JobState"] == "CANCELLED"


def test_untranslatable_script_fails_fast_with_the_reason(slurm, user_a):
    user_a.write("job.sh", "#!/bin/bash\n#SBATCH --gres=gpu:64\necho never\n")
    started = time.monotonic()
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    assert slurm.wait_job(job_id, timeout=30)["JobState"] == "FAILED"
    assert time.monotonic() - started < 30
    assert "no coretype" in slurm.wait_file(user_a.path / f"slurm-{job_id}.out").lower()


def test_command_line_ntasks_wins_over_the_script(slurm, user_a):
    user_a.write("in.txt", "x\n")
    user_a.write("job.sh", ECHO)
    job_id = slurm.sbatch(user_a, "job.sh", "-n", "8", "--partition=rescale")
    assert slurm.wait_job(job_id, timeout=90)["JobState"] == "COMPLETED"
    assert "ntasks=8" in slurm.wait_file(user_a.path / f"slurm-{job_id}.out")


def test_array_of_three_makes_three_remote_jobs(slurm, user_a, emulator):
    user_a.write("job.sh", "#!/bin/bash\necho task $SLURM_ARRAY_TASK_ID > task-$SLURM_ARRAY_TASK_ID.txt\n")
    array_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale", "--array=1-3")
    for task in (1, 2, 3):
        fields = slurm.wait_job(f"{array_id}_{task}", timeout=120)
        assert fields["JobState"] == "COMPLETED"
        assert (user_a.path / f"task-{task}.txt").read_text() == f"task {task}\n"
        assert len(remote_jobs(emulator, fields["JobId"])) == 1


def test_agent_restart_while_jobs_run(slurm, user_a, service):
    user_a.write("job.sh", "#!/bin/bash\nsleep 6\necho survived > survived.txt\n")
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    slurm.wait_state([job_id], "RUNNING", timeout=30)
    time.sleep(2)
    service.restart()
    assert slurm.wait_job(job_id, timeout=120)["JobState"] == "COMPLETED"
    assert (user_a.path / "survived.txt").read_text() == "survived\n"


def _as_b(argv: list[str], cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNUSER, "-u", "burstuser_b", "--", *argv], cwd=cwd, env=USER_ENV,
                          capture_output=True, text=True, timeout=30)


def test_user_b_cannot_see_or_cancel_user_a_jobs(slurm, user_a, user_b, service):
    user_a.write("job.sh", "#!/bin/bash\nsleep 8\necho mine > mine.txt\n")
    job_id = slurm.sbatch(user_a, "job.sh", "--partition=rescale")
    slurm.wait_state([job_id], "RUNNING", timeout=30)
    entry = wait_until(lambda: [p.name for p in (service.spool / "claimed").iterdir()] if
                     (service.spool / "claimed").exists() else [], 30, "the claimed entry")[0]
    probe = ("import json,sys; from burst_agent.relayproto import call;"
             "print(json.dumps([call(sys.argv[1], {'op': op, 'entry': sys.argv[2], 'job': sys.argv[3],"
             " 'scheduler_job_id': sys.argv[3], 'all': True})[0]"
             " for op in ('status', 'cancel', 'outputs', 'resume', 'find', 'jobs')]))")
    python = str(AGENT.parent / "python")
    done = _as_b([python, "-c", probe, str(service.spool / "agent.sock"), entry, job_id], user_b.path)
    assert done.returncode == 0, done.stderr
    status, cancel_answer, outputs, resume, find, jobs = json.loads(done.stdout)
    assert status == resume == find == {"state": "unknown"}
    assert "error" in cancel_answer and "error" in outputs
    # B's own jobs may be listed: none of them is A's (a substring check would match "186" for job 86).
    assert all(job_id not in map(str, j.values()) and entry not in json.dumps(j) for j in jobs["jobs"]), jobs
    for private in (service.spool / "incoming", service.spool / "claimed" / entry):
        assert _as_b(["ls", str(private)], user_b.path).returncode != 0
    cancel = _as_b([str(AGENT), "cancel", "--config", str(service.config), entry], user_b.path)
    assert cancel.returncode != 0
    assert slurm.wait_job(job_id, timeout=120)["JobState"] == "COMPLETED"
