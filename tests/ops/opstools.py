"""Helpers for the ops tests: external tools (required in CI, else skipped loudly), a populated exposition."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from burst_agent.metrics import Metrics
from burst_agent.rescale.client import RequestEvent
from burst_agent.rescale.ratelimit import RateBudgets

REPO = Path(__file__).resolve().parents[2]
SETUP_HINT = "run .ci/ops-setup.sh (as root) to install promtool, systemd-analyze and ansible"


def require_tool(name: str) -> str:
    """The tool's path; a missing tool fails the test under CI=true and skips it (loudly) elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed: {SETUP_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI: {message}")
    pytest.skip(f"!!! NOT TESTED: {message}")


@pytest.fixture
def run_tool() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a required tool with a timeout; returns the completed process (text output)."""

    def _run(argv: Sequence[str], *, cwd: Path = REPO, stdin: str | None = None, timeout: float = 240,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        exe = require_tool(argv[0])
        return subprocess.run(
            [exe, *argv[1:]], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})},
        )

    return _run


def populated_metrics() -> Metrics:
    """Metrics with every event and every scrape-time source exercised, so every series shows."""
    m = Metrics(per_user_labels=True)
    m.watch_job_counts(lambda: [("slurm", "rescale", "running", 2), ("pbs", "", "done", 5)])
    m.watch_spool(lambda: 3)
    m.watch_budgets(RateBudgets())
    m.watch_budget_waiting(lambda: {"job-submission": 4})
    m.watch_spending(lambda: [("physics", 850.0, 1000.0, 0.8)])
    m.watch_protection(lambda: True)
    m.watch_cooling(lambda: {"nickel": 2_000_000_000.0})
    m.capacity_failover("nickel")
    m.job_submitted()
    m.job_finished("done")
    m.job_finished("failed", "stage_out")
    m.observe_request(RequestEvent("GET", "/jobs/", 200, 0.12, "jobs-usage", 0))
    m.observe_request(RequestEvent("POST", "/jobs/{id}/submit/", 429, 0.05, "job-submission", 0))
    m.transferred("upload", 4096, 0.5)
    m.transferred("download", 8192, 1.5)
    m.queue_wait(42.0)
    m.remote_run(3600.0, "emerald", 8, "proj", Decimal("0.11"), user="alice")
    m.poll_succeeded(1_700_000_000.0)
    return m
