"""A lost proxy node, round after round, on the multi-node rig of .ci/multinode-setup.sh (root only).

Each round submits --jobs burst jobs (burstuser_a and burstuser_b in turn, each in a workdir of its own)
to the rig's `rescale` partition. They start on n1 (it weighs least); once every remote job prints, n1's
namespace is killed (kill -9 of its slurmd, its slurmstepds and the relays). Slurm marks n1 DOWN and
requeues the jobs; they start on n2, when Slurm's BeginTime for a requeued job comes or at once with
--start-now (`scontrol update StartTime=now`, as the tests do); their relays re-attach and the jobs
complete. n1 is started again as soon as the jobs run on n2. A job counts as completed when Slurm says
COMPLETED 0:0, slurm-N.out holds every line of the remote log once and the output file arrived; a
duplicate is a remote job beyond the first for one Slurm job. Times are from the kill. Relays reach the
agent by its Unix socket's path (paths cross network namespaces), or with --transport tcp over TCP with
MUNGE, as relays on other hosts do (the agent listens on the rig's 10.77.0.1, named in <spool>/agents).

Run:  .venv-ci/bin/python benchmarks/node_loss.py [--rounds 5] [--jobs 6] [--remote-s 60] [--start-now]
      [--transport unix|tcp]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from agentbench import ROOT, machine, table, wait_for

from burst_agent.rescale.emulator import start_emulator

CONF = "/etc/slurm-multi/slurm.conf"
SETUP = ROOT / ".ci" / "multinode-setup.sh"
SPOOL = Path("/var/spool/burst-multi")
AGENT = Path("/opt/burst-agent/venv/bin/burst-agent")
SERVICE_USER = "burst-agent"
USERS = ("burstuser_a", "burstuser_b")
TOKEN = "node-loss-bench-token-0a1b2c"
ENV = {**os.environ, "SLURM_CONF": CONF}
TICK_S = 0.2
TCP_AGENT = "10.77.0.1:7557"
SCRIPT = "#!/bin/bash\nfor i in $(seq 1 {n}); do echo tick $i; echo $i > out.txt; sleep 0.2; done\n"


def run(argv: list[str], user: str | None = None, cwd: Path | None = None) -> str:
    prefix = ["runuser", "-u", user, "--"] if user else []
    done = subprocess.run([*prefix, *argv], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stdout}{done.stderr}")
    return done.stdout


def show_job(job_id: str) -> dict[str, str]:
    try:
        out = run(["scontrol", "-o", "show", "job", job_id])
    except RuntimeError:
        return {}
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", out.splitlines()[0])) if out.strip() else {}


def all_jobs(job_ids: list[str], test: Callable[[dict[str, str]], bool]) -> Callable[[], bool]:
    return lambda: all(test(show_job(j)) for j in job_ids)


def running_on(node: str) -> Callable[[dict[str, str]], bool]:
    return lambda f: (f.get("JobState"), f.get("NodeList")) == ("RUNNING", node)


def requeued(fields: dict[str, str]) -> bool:
    return (fields.get("Restarts"), fields.get("JobState")) == ("1", "PENDING")


def ended(fields: dict[str, str]) -> bool:
    return fields.get("JobState") not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")


def node_up(node: str) -> bool:
    state = run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"]).split("\n")[0].strip().rstrip("*~#%$@^-")
    return state in ("idle", "mixed", "allocated")


@dataclass
class Job:
    slurm_id: str
    workdir: Path


@dataclass
class Round:
    jobs: int
    completed: int
    duplicates: int
    requeued_s: float
    running_s: float
    done_s: float
    begin_delay_s: float  # Slurm's BeginTime of a requeued job, after the requeue


class Rig:
    """The emulator, the rig's agent (as the service user) and the Slurm side of one benchmark run."""

    def __init__(self, root: Path, transport: str) -> None:
        self.root = root
        self.emulator = start_emulator(root / "emulator", TOKEN, step_seconds=TICK_S)
        state = root / "state"
        for path, mode in ((SPOOL, 0o755), (state, 0o700)):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            shutil.chown(path, SERVICE_USER, SERVICE_USER)
            path.chmod(mode)
        token = state / "token"
        token.write_text(TOKEN)
        shutil.chown(token, SERVICE_USER, SERVICE_USER)
        token.chmod(0o600)
        config = root / "agent.yaml"
        config.write_text(yaml.safe_dump({
            "api": {"base_url": self.emulator.url, "token_file": str(token),
                    "rate_limits": {"job_submission_per_hour": 36000}},
            "agent": {"spool_dir": str(SPOOL), "state_db": str(state / "state.db"), "poll_interval_s": 5,
                      "cluster_name": "multi", "relay_grace_s": 10, "relay_tcp_listen": TCP_AGENT},
            "metrics": {"listen_port": 0},
        }))
        self.agent_log = (root / "agent.log").open("wb")
        self.agent = subprocess.Popen(["runuser", "-u", SERVICE_USER, "--", str(AGENT), "run", "--config",
                                       str(config)], stdout=self.agent_log, stderr=subprocess.STDOUT, cwd="/",
                                      env=ENV)
        wait_for(lambda: (SPOOL / "agent.sock").exists(), 30, "the agent's socket")
        if transport == "tcp":
            (SPOOL / "agents").write_text(TCP_AGENT + "\n")
            (SPOOL / "agents").chmod(0o644)

    def stop(self) -> None:
        self.agent.terminate()
        self.agent.wait(timeout=30)
        self.emulator.stop()

    def remote(self, slurm_id: str) -> list[Any]:
        marker = f"SLURM_JOB_ID={slurm_id} "
        with self.emulator.store.lock:
            return [j for j in self.emulator.store.jobs.values() if marker in j.analyses[0]["command"]]

    def printing(self, slurm_id: str) -> bool:
        jobs = [j for j in self.remote(slurm_id) if j.work_dir is not None]
        return bool(jobs) and "tick 5" in (Path(jobs[0].work_dir) / "process_output.log").read_text()

    def delivered(self, job: Job, ticks: int) -> bool:
        remote = [j for j in self.remote(job.slurm_id) if j.status == "Completed"]
        if not remote:
            return False
        expected = re.findall(r"tick \d+", (Path(remote[0].work_dir) / "process_output.log").read_text())
        out, result = job.workdir / f"slurm-{job.slurm_id}.out", job.workdir / "out.txt"
        log = re.findall(r"tick \d+", out.read_text()) if out.exists() else []
        output = result.read_text() if result.exists() else ""
        return len(expected) == ticks and log == expected and output == f"{ticks}\n"

    def submit(self, i: int, ticks: int) -> Job:
        user = USERS[i % len(USERS)]
        workdir = Path(tempfile.mkdtemp(prefix=f"{user}-", dir=self.root))
        shutil.chown(workdir, user, user)
        (workdir / "job.sh").write_text(SCRIPT.format(n=ticks))
        shutil.chown(workdir / "job.sh", user, user)
        out = run(["sbatch", "--parsable", "--partition=rescale", "job.sh"], user=user, cwd=workdir)
        return Job(out.strip().split(";")[0], workdir)


def slurm_time(text: str) -> float:
    """Seconds since the epoch of scontrol's local time; NaN for Unknown or None."""
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return float("nan")


def one_round(rig: Rig, jobs: int, ticks: int, start_now: bool) -> Round:
    submitted = [rig.submit(i, ticks) for i in range(jobs)]
    ids = [j.slurm_id for j in submitted]
    wait_for(all_jobs(ids, running_on("n1")), 120, "every job running on n1", step=0.2)
    wait_for(lambda: all(rig.printing(j) for j in ids), 120, "every remote job printing", step=0.2)
    lost = time.monotonic()
    run(["bash", str(SETUP), "kill-node", "n1"])
    wait_for(all_jobs(ids, requeued), 180, "the requeue", step=0.2)
    requeued_s, requeued_at = time.monotonic() - lost, time.time()
    begin_delay_s = slurm_time(show_job(ids[0]).get("EligibleTime", "")) - requeued_at
    if start_now:
        for job_id in ids:
            run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"])
    wait_for(all_jobs(ids, running_on("n2")), 600, "every job running on n2", step=0.2)
    running_s = time.monotonic() - lost
    run(["bash", str(SETUP), "start-node", "n1"])
    wait_for(lambda: node_up("n1"), 60, "n1 back in service", step=0.5)
    wait_for(all_jobs(ids, ended), 600, "the jobs' end", step=0.5)
    done_s = time.monotonic() - lost
    completed = 0
    for job in submitted:
        fields = show_job(job.slurm_id)
        ok = (fields.get("JobState"), fields.get("ExitCode")) == ("COMPLETED", "0:0")
        try:
            ok = ok and bool(wait_for(lambda job=job: rig.delivered(job, ticks), 60, "the log and outputs"))
        except TimeoutError:
            ok = False
        completed += ok
    duplicates = sum(max(0, len(rig.remote(j)) - 1) for j in ids)
    return Round(jobs, completed, duplicates, requeued_s, running_s, done_s, begin_delay_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=6, help="burst jobs on the lost node per round")
    parser.add_argument("--remote-s", type=float, default=60.0, help="how long each remote job prints")
    parser.add_argument("--start-now", action="store_true", help="start the requeued jobs at once")
    parser.add_argument("--transport", choices=("unix", "tcp"), default="unix",
                        help="how relays reach the agent")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not Path(CONF).exists() or not AGENT.exists():
        print("node_loss: needs root, the rig (.ci/multinode-setup.sh) and the agent (.ci/agent-install.sh)")
        return 2
    for node in ("n1", "n2"):
        run(["bash", str(SETUP), "start-node", node])
        wait_for(lambda node=node: node_up(node), 60, f"{node} up", step=0.5)
    print(f"node_loss: {machine()}")
    root = Path(tempfile.mkdtemp(prefix="burst-node-loss-", dir="/tmp"))
    root.chmod(0o755)
    rig = Rig(root, args.transport)
    rounds: list[Round] = []
    try:
        for n in range(1, args.rounds + 1):
            result = one_round(rig, args.jobs, int(args.remote_s / TICK_S), args.start_now)
            rounds.append(result)
            print(f"round {n}: {result}", flush=True)
    finally:
        rig.stop()
        if not os.environ.get("BURST_KEEP_TEST_DIRS"):
            shutil.rmtree(root, ignore_errors=True)
    jobs, completed = sum(r.jobs for r in rounds), sum(r.completed for r in rounds)
    duplicates = sum(r.duplicates for r in rounds)
    print(table(["rounds", "jobs on the lost node", "completed", "duplicate remote jobs",
                 "kill -> requeued (median, max)", "kill -> running on n2", "kill -> all done",
                 "Slurm's BeginTime after the requeue"],
                [[len(rounds), jobs, f"{completed} ({completed / jobs:.0%})", duplicates,
                  _spread([r.requeued_s for r in rounds]), _spread([r.running_s for r in rounds]),
                  _spread([r.done_s for r in rounds]), _spread([r.begin_delay_s for r in rounds])]]))
    started = "started at once (--start-now)" if args.start_now else "started by Slurm"
    print(f"(remote jobs of {args.remote_s:g} s; requeued jobs {started}; relays by {args.transport})")
    return 0 if completed == jobs and not duplicates else 1


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s, {max(values):.1f} s"


if __name__ == "__main__":
    sys.exit(main())
