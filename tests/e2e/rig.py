"""A real `burst-agent run` process against the in-process emulator, driven through its spool."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pgkit import e2e_state
from waiting import terminate, wait_until

from burst_agent.lifecycle import JobState
from burst_agent.rescale.emulator import EmulatorHandle
from burst_agent.spool import Spool, submit_entry
from burst_agent.store import JobRecord, SqlLedger
from burst_agent.stores import open_store


@dataclass
class AgentRig:
    """Config, token file, spool and state of one agent; start/kill it like an admin would. The state is
    a SQLite file, or with BURST_TEST_STORE=postgres a PostgreSQL database of its own."""

    root: Path
    emulator: EmulatorHandle
    extra_config: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    state: Path | str = ""

    def __post_init__(self) -> None:
        self.state = self.state or e2e_state(self.root)
        token = self.root / "token"
        token.write_text(self.emulator.token)
        token.chmod(0o600)
        config = {
            "api": {"base_url": self.emulator.url, "token_file": str(token), "backoff_base_s": 0.05,
                    "backoff_max_s": 0.5, **self.extra_config.get("api", {})},
            "agent": {"spool_dir": str(self.root / "spool"), "state_db": str(self.state),
                      "poll_interval_s": 5, "cluster_name": "test", **self.extra_config.get("agent", {})},
            "metrics": {"listen_port": 0},
            **{k: v for k, v in self.extra_config.items() if k not in ("agent", "api")},
        }
        self.config_path = self.root / "agent.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.spool = Spool(self.root / "spool").ensure()

    def start(self, failpoints: str = "") -> subprocess.Popen[bytes]:
        env = {**os.environ, "BURST_AGENT_FAILPOINTS": failpoints}
        self.runs += 1
        log = (self.root / f"agent-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "burst_agent.cli", "run", "--config", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        return self.proc

    def logs(self) -> str:
        return "".join((self.root / f"agent-{n}.log").read_text() for n in range(1, self.runs + 1))

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        terminate(self.proc, timeout=20)

    def workdir(self, name: str, files: dict[str, bytes] | None = None) -> Path:
        path = self.root / "work" / name
        path.mkdir(parents=True)
        for rel, data in (files or {}).items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_bytes(data)
        return path

    def submit(self, script: str, workdir: Path, job_id: str = "1", **request: Any) -> str:
        return submit_entry(self.spool, script, {"workdir": str(workdir), "job_id": job_id, **request})

    def store(self) -> SqlLedger:
        """The agent's store, opened as `burst-agent status` would (close it, or use `with`)."""
        return open_store(self.state)

    def job(self, entry: str) -> JobRecord | None:
        with self.store() as store:
            return store.by_entry(entry)

    def states(self, entry: str) -> list[JobState]:
        """Every state the entry's job entered, in order (its transition history)."""
        with self.store() as store:
            job = store.by_entry(entry)
            return [] if job is None else [t.to_state for t in store.history(job.id)]

    def wait_job(self, entry: str, predicate: Callable[[JobRecord], bool], timeout: float = 60,
                 what: str = "the job") -> JobRecord:
        def check() -> JobRecord | None:
            job = self.job(entry) if not isinstance(self.state, Path) or self.state.exists() else None
            return job if job is not None and predicate(job) else None

        try:
            return wait_until(check, timeout, what)
        except AssertionError as exc:
            tail = self.logs()[-4000:]
            raise AssertionError(f"{exc}; job now: {self.job(entry)}\n--- agent log ---\n{tail}") from None

    def wait_terminal(self, entry: str, timeout: float = 60) -> JobRecord:
        return self.wait_job(entry, lambda j: j.terminal, timeout, "a final state")
