"""The demo: emulator + agent on a temporary spool; the example jobs run end to end and are checked."""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

from burst_agent.config import config_from_mapping
from burst_agent.jobview import hardware
from burst_agent.record import JobRecord

SCRIPT_SUFFIXES = (".sbatch", ".pbs", ".sh")


@dataclass(frozen=True)
class Expected:
    """What an example must end as: state, exit code, and an output file that must have come back."""

    state: str
    exit_code: int
    output: str


EXPECTED: dict[str, Expected] = {
    "mpi_hello.sbatch": Expected("done", 0, "ranks.txt"),
    "wordcount.sbatch": Expected("done", 0, "results/counts.txt"),
    "fails_exit3.sbatch": Expected("failed", 3, "partial.txt"),
    "openmp.pbs": Expected("done", 0, "omp.txt"),
}


def examples_dir() -> Path:
    return Path(str(resources.files("burst_agent") / "data" / "examples"))


def prepare_workdirs(source: Path, work: Path) -> dict[str, Path]:
    """One working directory per example (a sub-directory example travels with its input files)."""
    scripts: dict[str, Path] = {}
    for item in sorted(source.iterdir()):
        if item.is_dir():
            shutil.copytree(item, work / item.name)
            found = [p for p in (work / item.name).iterdir() if p.suffix in SCRIPT_SUFFIXES]
        elif item.suffix in SCRIPT_SUFFIXES:
            (work / item.stem).mkdir(parents=True)
            found = [Path(shutil.copy(item, work / item.stem / item.name))]
        else:
            found = []
        scripts.update({p.name: p for p in found})
    return scripts


def check(job: JobRecord, expected: Expected | None) -> str | None:
    """Why the job did not end as expected, or None."""
    if expected is None:
        return None
    if job.state.value != expected.state or job.result.exit_code != expected.exit_code:
        return f"expected {expected.state} with exit code {expected.exit_code}"
    if job.plan is None or not (Path(job.plan.output_dir) / expected.output).is_file():
        return f"expected output {expected.output} is missing"
    return None


def _progress(jobs: list[JobRecord], names: dict[str, str], seen: dict[str, str], out: TextIO) -> None:
    for job in jobs:
        label = job.state.value + (f" ({job.remote.status})" if job.remote.status else "")
        if seen.get(job.id) != label:
            seen[job.id] = label
            print(f"  {names.get(job.entry, job.entry):<20} {label}", file=out, flush=True)


def run_demo(base: Path | None, *, step_seconds: float, timeout: float, out: TextIO = sys.stdout) -> int:
    from burst_agent.agent import Agent
    from burst_agent.logsetup import configure
    from burst_agent.pipeline.wiring import build_context
    from burst_agent.rescale.emulator import start_emulator
    from burst_agent.spool import submit_entry
    from burst_agent.textable import render

    root = Path(tempfile.mkdtemp(prefix="burst-demo-")) if base is None else base
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    token_file = root / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    log_file = (root / "agent.log").open("w")
    configure(stream=log_file)
    print(f"burst-agent demo in {root}", file=out)
    emulator = start_emulator(root / "emulator", token, step_seconds=step_seconds)
    print(f"emulator: {emulator.url} (Rescale API v2)", file=out)
    config = config_from_mapping({
        "api": {"base_url": emulator.url, "token_file": str(token_file)},
        "agent": {"spool_dir": str(root / "spool"), "state_db": str(root / "state.db"),
                  "poll_interval_s": 5, "cluster_name": "demo"},
        "metrics": {"listen_port": 0},
    })
    ctx = build_context(config)
    agent = Agent(ctx)
    thread = threading.Thread(target=agent.run, name="agent", daemon=True)
    thread.start()
    scripts = prepare_workdirs(examples_dir(), root / "work")
    names = {}
    for number, (name, script) in enumerate(sorted(scripts.items()), start=1001):
        request = {"workdir": str(script.parent), "job_id": str(number)}
        names[submit_entry(ctx.spool, script.read_text(), request)] = name
    print(f"submitted {len(names)} example jobs; agent log: {root / 'agent.log'}", file=out)
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    jobs: list[JobRecord] = []
    while time.monotonic() < deadline:
        jobs = [j for j in ctx.store.jobs() if j.entry in names]
        _progress(jobs, names, seen, out)
        if len(jobs) == len(names) and all(j.terminal for j in jobs):
            break
        time.sleep(0.3)
    agent.stop()
    thread.join(timeout=15)
    emulator.stop()
    log_file.close()
    problems = {}
    rows = []
    for job in sorted(jobs, key=lambda j: names[j.entry]):
        name = names[job.entry]
        problem = check(job, EXPECTED.get(name)) if job.terminal else "did not finish in time"
        if problem:
            problems[name] = problem
        exit_code, plan = job.result.exit_code, job.plan
        rows.append((name, job.state.value, "-" if exit_code is None else str(exit_code),
                     hardware(job), plan.output_dir if plan else "-",
                     "ok" if not problem else f"UNEXPECTED: {problem}"))
    missing = set(names.values()) - {names[j.entry] for j in jobs}
    problems.update({name: "never recorded by the agent" for name in missing})
    print("\n" + render(("JOB", "STATE", "EXIT", "HARDWARE", "OUTPUTS IN", "CHECK"), rows), file=out)
    if problems:
        print(f"\ndemo FAILED: {len(problems)} job(s) did not behave as expected", file=out)
        return 1
    print(f"\ndemo OK: every job ended as expected; outputs and slurm-N.out logs are in {root / 'work'}",
          file=out)
    return 0
