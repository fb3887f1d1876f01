"""A site's first week in one run: 50 jobs from two users on the real Slurm, through the relay and the
agent — success, exit 3, scancel mid-run, time limits, arrays, a GPU job, a custom -o, a memory-sized job.
Every outcome is what a user expects, the outputs and the whole remote log are in every workdir, and no
line from our own tooling in any user's log reports an error."""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import FINAL_STATES, Cluster, Workdir, make_workdir
from test_relay_e2e import remote_jobs
from waiting import wait_until

TICKS = ("for i in $(seq 1 900); do echo tick $i; echo $i > partial-$SLURM_JOB_ID.txt; sleep 0.2; done\n")
OK = ("#!/bin/bash\n#SBATCH -n 2\necho remote-line ntasks=$SLURM_NTASKS\n"
      "echo $SLURM_JOB_ID > out-$SLURM_JOB_ID.txt\n")
# What our tooling may never say in a user's log.
TROUBLE = re.compile(r"Traceback|unreachable|error|refused|not written|could not|gave up|giving up", re.I)


@dataclass
class Case:
    kind: str
    script: str
    options: tuple[str, ...] = ()
    expect: tuple[str, frozenset[str]] = ("COMPLETED", frozenset({"0:0"}))
    output: str | None = None  # a file the job writes, holding its own job id
    log_name: str = "slurm-{id}.out"
    ids: list[str] = field(default_factory=list)


def _cases() -> list[Case]:
    stopped = {"scancel": ("CANCELLED", ""), "timeout": ("TIMEOUT", "#SBATCH -t 1\n")}
    return [
        *[Case("success", OK, output="out-{id}.txt") for _ in range(10)],
        *[Case("exit3", "#!/bin/bash\necho failing on purpose\nexit 3\n",
               expect=("FAILED", frozenset({"3:0"}))) for _ in range(4)],
        # Ended by the signal, as any job: SIGTERM, or SIGKILL when the delivery outlasted KillWait.
        *[Case(kind, f"#!/bin/bash\n{directive}{TICKS}", expect=(state, frozenset({"0:15", "0:9"})))
          for kind, (state, directive) in stopped.items() for _ in range(3 if kind == "scancel" else 2)],
        Case("array", "#!/bin/bash\necho array=$SLURM_ARRAY_JOB_ID task=$SLURM_ARRAY_TASK_ID\n",
             ("--array=1-3",), log_name="slurm-{array}_{task}.out"),
        Case("gpu", "#!/bin/bash\n#SBATCH --gres=gpu:1\necho gpu job on $RESCALE_CORES_PER_SLOT cores\n"),
        Case("custom-o", "#!/bin/bash\n#SBATCH -o custom-%j.log\necho into the custom log\n",
             log_name="custom-{id}.log"),
        Case("memory", "#!/bin/bash\n#SBATCH --mem=16G\necho sized by memory\n"),
    ]


def _submit(slurm, wd: Workdir, case: Case, n: int) -> None:
    name = f"{case.kind}-{n}.sh"
    wd.write(name, case.script)
    job_id = slurm.sbatch(wd, name, "--partition=rescale", *case.options)
    case.ids = [f"{job_id}_{t}" for t in (1, 2, 3)] if case.kind == "array" else [job_id]


def _printing(emulator, job_id: str) -> bool:
    jobs = [j for j in remote_jobs(emulator, job_id) if j.work_dir is not None]
    return bool(jobs) and "tick 5" in (Path(jobs[0].work_dir) / "process_output.log").read_text()


def _ticks(text: str) -> list[str]:
    return re.findall(r"tick \d+", text)


def _whole_log(emulator, wd: Workdir, job_id: str, log: Path) -> bool:
    jobs = [j for j in remote_jobs(emulator, job_id) if j.status == "Completed"]
    remote = _ticks((Path(jobs[0].work_dir) / "process_output.log").read_text()) if jobs else None
    return bool(remote) and log.exists() and _ticks(log.read_text()) == remote \
        and (wd.path / f"partial-{job_id}.txt").exists()


def _final_states(ids: list[str], timeout: float) -> dict[str, dict[str, str]]:
    """Every job's final scontrol fields, read while they last (slurmctld forgets a job MinJobAge
    seconds after its end, so all jobs are watched at once); keyed by the id given (N or N_T)."""
    found: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(ids) and time.monotonic() < deadline:
        out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=30)
        for line in out.stdout.splitlines():
            fields = dict(re.findall(r"(\w[\w/:]*)=(\S*)", line))
            names = {fields.get("JobId", "")}
            if fields.get("ArrayTaskId"):
                names.add(f"{fields.get('ArrayJobId')}_{fields['ArrayTaskId']}")
            for name in names & set(ids):
                if fields.get("JobState") in FINAL_STATES:
                    found.setdefault(name, fields)
        time.sleep(0.5)
    assert len(found) == len(ids), f"never final: {sorted(set(ids) - set(found))}"
    return found


def _check(emulator, wd: Workdir, case: Case, scontrol_id: str, fields: dict[str, str]) -> list[str]:
    """What is wrong with one finished job, as a user would see it."""
    job_id, (array, _, task) = fields["JobId"], scontrol_id.partition("_")
    if fields["JobState"] != case.expect[0] or fields["ExitCode"] not in case.expect[1]:
        return [f"{case.kind} {scontrol_id}: {fields['JobState']} {fields['ExitCode']}"]
    log = wd.path / case.log_name.format(id=job_id, array=array, task=task)
    if case.kind in ("scancel", "timeout"):
        wait_until(lambda: _whole_log(emulator, wd, job_id, log), 180, f"the whole log of {scontrol_id}")
    text = Cluster.wait_file(log, timeout=60)
    problems = [f"{case.kind} {scontrol_id}: {line}" for line in text.splitlines()
                if line.startswith("burst-agent") and TROUBLE.search(line)]
    if "running on Rescale as job" not in text:
        problems.append(f"{case.kind} {scontrol_id}: no remote job shown in its log")
    if case.output and (wd.path / case.output.format(id=job_id)).read_text() != f"{job_id}\n":
        problems.append(f"{case.kind} {scontrol_id}: output missing")
    if case.kind == "array" and f"array={array} task={task}" not in text:
        problems.append(f"array {scontrol_id}: wrong scheduler variables: {text!r}")
    return problems + _accounted(emulator, case, scontrol_id, fields)


def _accounted(emulator, case: Case, scontrol_id: str, fields: dict[str, str]) -> list[str]:
    """What sacct says of the job: the state and exit code scontrol said, and the remote run's record.
    A stopped job's signal is in its batch step, as for any Slurm job (the allocation line says 0:0)."""
    job_id = fields["JobId"]
    code = fields["ExitCode"].split(":")[0]
    phase = "cancelled" if case.kind in ("scancel", "timeout") else \
        "completed (exit 0)" if code == "0" else f"failed: the script exited with code {code}"
    record = Cluster().wait_sacct(scontrol_id, phase)
    stopped = case.kind in ("scancel", "timeout")
    code = Cluster.sacct(f"{scontrol_id}.batch")["ExitCode"] if stopped else record["ExitCode"]
    remote = remote_jobs(emulator, job_id)
    # The relay keeps the record of a job that ended before its remote run with sacctmgr, which
    # lowercases it (Slurm 22.05); of any other job with scontrol, exactly.
    exact = (lambda text: text.lower()) if stopped else (lambda text: text)
    wanted = {"State": fields["JobState"], "ExitCode": fields["ExitCode"],
              "rescale": exact(remote[0].id) if len(remote) == 1 else f"one remote job, not {len(remote)}"}
    found = {"State": record["State"].split(" ")[0], "ExitCode": code,
             "rescale": dict(re.findall(r"(\S+?)=(\S+)", record["Comment"])).get("rescale")}
    return [f"{case.kind} {job_id}: sacct {key} {found[key]!r}, expected {value!r}"
            for key, value in wanted.items() if found[key] != value]


def _squeue_comment(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%k"], capture_output=True, text=True,
                          timeout=20).stdout.strip()


def _cancel_when_printing(emulator, plan: list[tuple[Workdir, Case]]) -> None:
    for _wd, case in plan:
        if case.kind == "scancel":
            wait_until(lambda c=case: _printing(emulator, c.ids[0]), 300, "a job to cancel printing")
            # Slurm's own record shows the phase once the agent's poll has seen it executing.
            wait_until(lambda c=case: _squeue_comment(c.ids[0]).startswith("executing on "), 30,
                       "the remote phase in squeue")
            assert " | rescale=" in _squeue_comment(case.ids[0])
            assert subprocess.run(["scancel", case.ids[0]], timeout=20).returncode == 0


@pytest.mark.timeout(1200)
def test_fifty_jobs_from_two_users_end_as_users_expect(slurm, service, emulator, shared_dir):
    users = [make_workdir(shared_dir, "burstuser_a"), make_workdir(shared_dir, "burstuser_b")]
    plan = [(wd, case) for wd in users for case in _cases()]
    assert sum(3 if case.kind == "array" else 1 for _, case in plan) == 50
    for n, (wd, case) in enumerate(plan):
        _submit(slurm, wd, case, n)
    ids = [i for _, case in plan for i in case.ids]
    with ThreadPoolExecutor(1) as pool:  # watched from now on: slurmctld forgets ended jobs soon
        watching = pool.submit(_final_states, ids, 900)
        _cancel_when_printing(emulator, plan)
        final = watching.result()
    problems = [p for wd, case in plan for scontrol_id in case.ids
                for p in _check(emulator, wd, case, scontrol_id, final[scontrol_id])]
    assert problems == [], "\n".join(problems)
