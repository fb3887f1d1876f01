"""The chaos workload (a seeded mix of exit 0 / exit 3 jobs, with and without inputs) and its audit."""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from dataclasses import astuple, dataclass, field
from pathlib import Path

import yaml
from rig import AgentRig

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.collect import SKIP
from burst_agent.rescale.emulator import EmulatorHandle
from burst_agent.store import JobRecord, JobStore

KiB = 1024
MiB = 1024 * KiB
KEY_IN_NAME = re.compile(r"\[(burst-[^\]]+)\]$")


def env_int(name: str, default: int) -> int:
    """A size knob for the long variants, e.g. BURST_CHAOS_JOBS=200."""
    return int(os.environ.get(name) or default)


@dataclass(frozen=True)
class JobSpec:
    """One workload job: its script, input files and the final state and exit code it must end with."""

    name: str
    script: str
    inputs: dict[str, bytes] = field(default_factory=dict)
    exit_code: int = 0

    @property
    def expected(self) -> tuple[JobState, int]:
        return (JobState.DONE if self.exit_code == 0 else JobState.FAILED, self.exit_code)


def _transform(n: int, rng: random.Random) -> JobSpec:
    data = rng.randbytes(rng.randint(1, 64) * KiB)
    script = (f"#!/bin/bash\n#SBATCH -J chaos-{n}\nsleep {rng.uniform(0, 2):.1f}\nmkdir -p out\n"
              f"md5sum in.bin > out/in.md5\nhead -c {rng.randint(1, 256) * KiB} /dev/urandom > out/data.bin\n"
              f"echo job {n} done\n")
    return JobSpec(f"t{n}", script, {"in.bin": data})


def _big(n: int, rng: random.Random) -> JobSpec:
    script = f"#!/bin/bash\nhead -c {rng.randint(2, 6) * MiB} /dev/urandom > big.bin\necho big {n}\n"
    return JobSpec(f"b{n}", script)


def _fail(n: int, rng: random.Random) -> JobSpec:
    script = f"#!/bin/bash\nsleep {rng.uniform(0, 3):.1f}\necho partial {n} > partial.txt\nexit 3\n"
    return JobSpec(f"f{n}", script, exit_code=3)


def _fail_with_input(n: int, rng: random.Random) -> JobSpec:
    data = rng.randbytes(rng.randint(1, 16) * KiB)
    script = "#!/bin/bash\ncp data/x.bin copy.bin\necho bad input >&2\nexit 3\n"
    return JobSpec(f"g{n}", script, {"data/x.bin": data}, exit_code=3)


KINDS = (_transform, _fail, _transform, _big, _fail_with_input)


def _with_pause(spec: JobSpec, seconds: float) -> JobSpec:
    """The same job, sleeping `seconds` first (after its directives)."""
    lines = spec.script.splitlines(keepends=True)
    head = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    script = "".join([*lines[:head], f"sleep {seconds:.1f}\n", *lines[head:]])
    return JobSpec(spec.name, script, spec.inputs, spec.exit_code)


def make_workload(count: int, seed: int, *, pause: tuple[float, float] = (0.0, 0.0)) -> list[JobSpec]:
    """`count` jobs cycling through KINDS; each first sleeps a random time within `pause` seconds."""
    rng = random.Random(seed)
    specs = [KINDS[n % len(KINDS)](n, rng) for n in range(count)]
    return [_with_pause(spec, rng.uniform(*pause)) if pause[1] else spec for spec in specs]


# The workload squeezes hours of traffic into a minute: Rescale's hourly budgets (which the client keeps,
# 1000 submissions/h) would pace it, and pacing is not what these tests measure. Budgets stay enabled.
FAST_BUDGETS = {"job_submission_per_hour": 360000, "jobs_usage_per_hour": 3600000, "user_per_hour": 3600000,
                "file_access_per_hour": 3600000, "billing_per_hour": 3600000}


def fast_rig(root: Path, emulator: EmulatorHandle) -> AgentRig:
    """An agent rig (tests/e2e/rig.py) whose client budgets do not pace the workload."""
    root.mkdir(parents=True, exist_ok=True)
    rig = AgentRig(root, emulator)
    config = yaml.safe_load(rig.config_path.read_text())
    config["api"]["rate_limits"] = FAST_BUDGETS
    rig.config_path.write_text(yaml.safe_dump(config))
    return rig


@dataclass
class Run:
    """The workload submitted to one agent: spec, workdir and spool entry of each job."""

    rig: AgentRig
    specs: list[JobSpec]
    entries: list[str] = field(default_factory=list)
    workdirs: list[Path] = field(default_factory=list)

    def submit(self, upto: int) -> None:
        """Drop the next jobs into the spool, up to `upto` submitted in all."""
        for spec in self.specs[len(self.entries) : upto]:
            work = self.rig.workdir(spec.name, spec.inputs)
            self.workdirs.append(work)
            self.entries.append(self.rig.submit(spec.script, work, job_id=str(len(self.entries) + 1)))

    def records(self) -> list[JobRecord | None]:
        if not (self.rig.root / "state.db").exists():
            return [None] * len(self.entries)
        with JobStore(self.rig.root / "state.db") as store:
            return [store.by_entry(entry) for entry in self.entries]

    def all_terminal(self) -> bool:
        records = self.records()
        return len(records) == len(self.specs) and all(r is not None and r.terminal for r in records)

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.all_terminal():
            if time.monotonic() > deadline:
                states = [(e, r.state.value if r else None) for e, r in zip(self.entries, self.records(),
                                                                             strict=True)]
                open_ = [s for s in states if s[1] not in ("done", "failed", "cancelled")]
                raise AssertionError(f"not finished after {timeout:.0f}s: {open_}\n--- agent log tail ---\n"
                                     f"{self.rig.logs()[-6000:]}")
            time.sleep(0.5)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _skipped(rel: str) -> bool:
    return rel in SKIP or any(s.endswith("/") and rel.startswith(s) for s in SKIP)


@dataclass
class Audit:
    """Everything wrong with a finished run; empty lists mean the run is correct."""

    wrong_state: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    strangers: list[str] = field(default_factory=list)
    bad_outputs: list[str] = field(default_factory=list)
    outputs_checked: int = 0

    @property
    def problems(self) -> list[str]:
        return self.wrong_state + self.duplicates + self.strangers + self.bad_outputs


def audit(run: Run) -> Audit:
    """Final states, one remote job per reconciliation key, every remote output delivered byte-identical."""
    result = Audit()
    records = run.records()
    emulator = run.rig.emulator.store
    with emulator.lock:
        remote = {job.id: (job.name, list(job.output_file_ids)) for job in emulator.jobs.values()}
        files = dict(emulator.files)
    by_key: dict[str, list[str]] = {}
    for job_id, (name, _outputs) in remote.items():
        match = KEY_IN_NAME.search(name)
        by_key.setdefault(match.group(1) if match else name, []).append(job_id)
    keys = set()
    for spec, entry, work, record in zip(run.specs, run.entries, run.workdirs, records, strict=True):
        if record is None or (record.state, record.result.exit_code) != spec.expected:
            got = None if record is None else (record.state.value, *astuple(record.result))
            result.wrong_state.append(f"{spec.name} ({entry}): want {spec.expected}, got {got}")
            continue
        keys.add(record.reconcile_key)
        remote_ids = by_key.get(record.reconcile_key, [])
        if remote_ids != [record.remote_job_id]:
            result.duplicates.append(f"{spec.name}: remote {remote_ids}, agent has {record.remote_job_id}")
        for file_id in remote.get(record.remote_job_id or "", ("", []))[1]:
            out = files[file_id]
            if _skipped(out.relative_path):
                continue
            result.outputs_checked += 1
            local = work / out.relative_path
            if _md5(out.disk_path) != out.md5:
                result.bad_outputs.append(f"{spec.name}: emulator record {out.relative_path} md5 is stale")
            elif not local.is_file():
                result.bad_outputs.append(f"{spec.name}: {out.relative_path} missing")
            elif _md5(local) != out.md5:
                result.bad_outputs.append(f"{spec.name}: {out.relative_path} differs from the remote file")
    result.strangers = [f"{key}: {ids}" for key, ids in by_key.items() if key not in keys]
    return result
