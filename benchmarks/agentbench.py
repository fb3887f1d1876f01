"""Shared helpers for the agent benchmarks: machine facts, tables, job bodies, agent processes, /proc."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from burst_agent.config import RateLimits, TranslateConfig
from burst_agent.lifecycle import JobState
from burst_agent.record import Inputs, Origin, Plan, Remote
from burst_agent.store import JobStore
from burst_agent.translate import load_catalogue, parse_script, translate

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-not-a-secret"
PY = ".venv/bin/python"
PRICE_PER_CORE_HOUR = Decimal("0.0425")  # emerald, per core and hour (a plan needs one)
SCRIPT = """#!/bin/bash
#SBATCH -J bench-{i}
#SBATCH -n 1
#SBATCH -t 00:30:00
echo job {i}
sleep 600
"""
# The path a job takes from the spool to an active remote state (what a restart finds).
TO_QUEUED = (JobState.TRANSLATED, JobState.STAGING_IN, JobState.STAGED, JobState.CREATING, JobState.CREATED,
             JobState.TAGGED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.QUEUED)
# Budget scaling: every hourly limit x K (a burst is a count, so it stays), every remote duration / K,
# so demand keeps its proportion to the budget and an hour of a busy site runs in 60/K minutes.
PER_HOUR_KEYS = tuple(f.name for f in dataclasses.fields(RateLimits) if f.name.endswith("_per_hour"))


def machine() -> str:
    """One line: cores, CPU model, load, Python."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()[0]
    return (f"nproc={os.cpu_count()}, CPU: {model}, load(1 min) at start {load:.2f}, "
            f"Python {platform.python_version()}")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (it pastes straight into docs/benchmarks.md)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def job_body(i: int = 0) -> tuple[dict[str, Any], str]:
    """A valid POST /jobs/ body for SCRIPT (as the agent's translate step makes it) and the script."""
    catalogue = load_catalogue(json.loads((ROOT / "burst_agent/data/coretypes.json").read_text()))
    script = SCRIPT.format(i=i)
    result = translate(parse_script(script), catalogue, TranslateConfig(), job_ids={"job_id": str(i)})
    return dict(result.body), script


def rate_limits_config(budget_scale: float | None) -> dict[str, Any]:
    """`api.rate_limits` of a benchmark: None lifts the budgets; K is every default hourly limit x K."""
    if budget_scale is None:
        return {"enabled": False}
    if not budget_scale > 0:
        raise ValueError(f"budget scale must be a number above 0, not {budget_scale!r}")
    defaults = RateLimits()
    return {key: getattr(defaults, key) * budget_scale for key in PER_HOUR_KEYS}


def scaled_rate_limits(budget_scale: float | None) -> RateLimits:
    """The RateLimits of rate_limits_config(budget_scale), for a client built in the benchmark."""
    return RateLimits(**rate_limits_config(budget_scale))


def budgets_label(budget_scale: float | None) -> str:
    """How the budgets of a run were set, for its report (every table says which)."""
    if budget_scale is None:
        return "budgets lifted (api.rate_limits.enabled: false)"
    if budget_scale == 1:
        return "default budgets (Rescale's limits x target_fraction 0.85), real time"
    k = f"{budget_scale:g}"
    return (f"default budgets scaled x{k} (every *_per_hour x{k}, bursts as they are, remote durations "
            f"/{k}); rates in real time = measured x 3600 / {k}")


def real_per_hour(count: float, seconds: float, budget_scale: float | None) -> float:
    """A rate measured in a scaled run, per hour of real (unscaled) time: count/s x 3600 / K."""
    return count / seconds * 3600.0 / (budget_scale or 1.0)


def parse_budget_scale(text: str) -> float | None:
    """--budget-scale: a number K > 0, or `lifted` (no client budgets at all)."""
    if text == "lifted":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0 or 'lifted', not {text!r}")
    return value


def add_budget_scale(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--budget-scale", type=parse_budget_scale, default=parse_budget_scale(default),
                        metavar="K", help="every default hourly API budget x K and remote durations / K; "
                        f"'lifted' turns the budgets off (default {default})")


def scale_flag(budget_scale: float | None) -> str:
    """The --budget-scale value that reproduces a run, for its printed command."""
    return "lifted" if budget_scale is None else f"{budget_scale:g}"


def write_config(root: Path, url: str, *, agent: Mapping[str, Any] | None = None,
                 budget_scale: float | None = None, limits: Mapping[str, float] | None = None) -> Path:
    """An agent config under root: budgets lifted (None) or the defaults x budget_scale, metrics off,
    fast retries; `agent` overrides agent keys, `limits` api.rate_limits keys (an experiment)."""
    token = root / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = {
        "api": {"base_url": url, "token_file": str(token), "backoff_base_s": 0.05, "backoff_max_s": 0.5,
                "rate_limits": {**rate_limits_config(budget_scale), **(limits or {})}},
        "agent": {"spool_dir": str(root / "spool"), "state_db": str(root / "state.db"),
                  "cluster_name": "bench", **(agent or {})},
        "metrics": {"enabled": False},
    }
    path = root / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def add_queued_job(store: JobStore, i: int, body: dict[str, Any], script: str, remote_id: str,
                   remote_status: str = "Queued", state: JobState = JobState.QUEUED) -> None:
    """A job record as the agent leaves it once Rescale took the job (full plan, paths, inputs)."""
    entry = f"20240101T000000-{i:016x}"
    workdir = f"/home/bench/run{i}"
    rec = store.add_job(entry=entry, reconcile_key=f"burst-bench-{entry}", origin=Origin(
        owner_uid=os.getuid(), owner_name="bench", scheduler_job_id=str(100000 + i)))
    plan = Plan(scheduler="slurm", delivery="direct", workdir=workdir, inputs_from=workdir,
                output_dir=workdir, stdout_path=f"{workdir}/slurm-{i}.out", stderr_path=None, script=script,
                body={**body, "name": f"bench-{i} [burst-bench-{entry}]"}, coretype="emerald",
                cores_per_slot=1, slots=1, price_per_core_hour=PRICE_PER_CORE_HOUR)
    at: dict[JobState, dict[str, Any]] = {
        JobState.TRANSLATED: {"plan": plan},
        JobState.STAGED: {"inputs": Inputs(file_ids=(f"F{i}",), md5s={"input.txt": "0" * 32}, placement="",
                                           cached={})},
        JobState.CREATED: {"remote_job_id": remote_id},
    }
    for step in TO_QUEUED[: TO_QUEUED.index(state) + 1]:
        extra = dict(at.get(step, {}))
        if step is state:
            extra["remote"] = Remote(status=remote_status)
        store.transition(rec.id, step, "bench", **extra)


def first_transitions(db: Path, state: JobState) -> dict[str, float]:
    """{job id: when it first entered `state`} from the agent's state DB history (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT job_id, MIN(at) FROM transitions WHERE to_state = ? GROUP BY job_id",
                            (state.value,)).fetchall()
    finally:
        conn.close()
    return {job_id: float(at) for job_id, at in rows}


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def cpu_seconds(pid: int) -> float:
    """user + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class AgentProcess:
    """`burst-agent run --config FILE` as a child process, its JSON log in a file."""

    def __init__(self, config: Path, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self.started = time.monotonic()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "burst_agent.cli", "run", "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "BURST_AGENT_FAILPOINTS": "", **(env or {})},
            )
        self.pid = self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def wait_event(self, event: str, timeout: float = 60) -> float:
        """Seconds from start until a log line with this event appeared (polled every 20 ms)."""
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            return any(e.get("event") == event for e in self.events())

        wait_for(seen, timeout, f"agent log event {event!r}", step=0.02)
        return time.monotonic() - self.started

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode



def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (from PATH, else /tmp/venv-prof) sampling pid at 50 Hz until stop_profiler(): raw stacks."""
    spy = shutil.which("py-spy") or "/tmp/venv-prof/bin/py-spy"
    command = [spy, "record", "--pid", str(pid), "--threads", "--rate", "50", "--nonblocking",
               "--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def profile_summary(path: Path, top: int = 12) -> str:
    """From py-spy raw stacks ("thread;frame;... N"): samples by thread, top functions, top leaf lines."""
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        threads[frames[0].split(": ", 1)[-1].rstrip("0123456789").rstrip("-_")] += int(count)
        inclusive.update(dict.fromkeys({f.split(" (")[0] for f in frames[1:]}, int(count)))
        leaves[frames[-1].replace(str(ROOT) + "/", "")] += int(count)
    total = sum(threads.values()) or 1
    out = [f"py-spy: {total} non-idle samples at 50 Hz; by thread: "
           + ", ".join(f"{name} {n / total:.0%}" for name, n in threads.most_common())]
    out += ["  inclusive:"] + [f"    {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    out += ["  leaf (where the samples sit):"]
    out += [f"    {n / total:6.1%}  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(out)
