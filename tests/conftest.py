"""Shared fixtures: the Rescale emulator in-process (`emulator`) or as a real CLI subprocess; state
locations for both store backends (`state_location`, `postgres_url`); this machine's real Slurm out of
reach of every test but tests/slurm (`_no_real_slurm`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pgkit
import pytest
import requests
from emukit import FAST_STEP, TEST_TOKEN

from burst_agent.rescale.emulator import (
    EmulatorHandle,
    EmulatorProcess,
    spawn_emulator_process,
    start_emulator,
)

SLURM_COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sacct", "sacctmgr", "sreport", "sinfo")
STUB = "#!/bin/sh\necho \"$(basename \"$0\"): not for this test (tests/conftest.py)\" >&2\nexit 1\n"


@pytest.fixture(scope="session")
def _slurm_stubs(tmp_path_factory) -> Path:
    stubs = tmp_path_factory.mktemp("no-slurm")
    for name in SLURM_COMMANDS:
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    return stubs


@pytest.fixture(autouse=True)
def _no_real_slurm(request, monkeypatch, _slurm_stubs) -> None:
    """CI runs tests/slurm on this machine's real Slurm beside the other tests: their relays (as root,
    with made-up SLURM_JOB_IDs) and agents must not write another test's job record with sacctmgr,
    nor read squeue. Outside tests/slurm, Slurm's commands are stubs that fail, as on a host without
    Slurm."""
    if "slurm" not in Path(str(request.node.path)).parts:
        monkeypatch.setenv("PATH", f"{_slurm_stubs}:{os.environ.get('PATH', '')}")




@pytest.fixture
def emulator(tmp_path) -> Iterator[EmulatorHandle]:
    """An in-process emulator on 127.0.0.1 with fast status steps; `.url` (no trailing slash), `.token`."""
    handle = start_emulator(tmp_path / "emulator", TEST_TOKEN, step_seconds=FAST_STEP, stop_grace_seconds=1.0)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def emulator_process(tmp_path) -> Iterator[EmulatorProcess]:
    """The emulator started through `burst-agent emulate` in a subprocess (`.url`, `.pid`, `.stop()`)."""
    process = spawn_emulator_process(tmp_path / "emulator-proc", TEST_TOKEN, step_seconds=FAST_STEP)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def auth(emulator) -> dict[str, str]:
    return {"Authorization": f"Token {emulator.token}"}


@pytest.fixture
def api(emulator) -> str:
    """The API root URL, e.g. http://127.0.0.1:PORT/api/v2/."""
    return f"{emulator.url}/api/v2/"


@pytest.fixture
def rescale_client(emulator) -> Iterator[Any]:
    """A RescaleClient on the emulator: two retries without sleeping, no client-side rate limits."""
    from burst_agent.config import RateLimits
    from burst_agent.rescale.client import RescaleClient
    from burst_agent.rescale.ratelimit import RateBudgets
    from burst_agent.rescale.retry import RetryPolicy
    from burst_agent.secret import Token

    retry = RetryPolicy(max_retries=2, sleep=lambda s: None)
    with RescaleClient(emulator.url, Token(emulator.token), retry=retry,
                       budgets=RateBudgets(RateLimits(enabled=False))) as client:
        yield client


@pytest.fixture
def upload(api, auth) -> Callable[[str, bytes], dict[str, Any]]:
    def _upload(name: str, data: bytes) -> dict[str, Any]:
        response = requests.post(
            f"{api}files/contents/", headers=auth, files={"file": (name, data)}, timeout=30
        )
        assert response.status_code == 201, response.text
        return response.json()

    return _upload


def _job_body(command: str = "echo hi", **hardware: Any) -> dict[str, Any]:
    return {
        "name": "emulator test job",
        "jobanalyses": [
            {
                "analysis": {"code": "user_included", "version": "0"},
                "command": command,
                "hardware": {"coreType": "emerald", "coresPerSlot": 1, **hardware},
            }
        ],
    }


@pytest.fixture
def job_body() -> Callable[..., dict[str, Any]]:
    """Build a valid create body: job_body(command, **hardware overrides)."""
    return _job_body


@pytest.fixture
def run_job(api, auth) -> Callable[..., str]:
    """Create and submit a job running `command` (extra keys merge into the jobanalysis); returns its id."""

    def _run(command: str, **analysis: Any) -> str:
        body = _job_body(command)
        body["jobanalyses"][0].update(analysis)
        created = requests.post(f"{api}jobs/", headers=auth, json=body, timeout=10)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert requests.post(f"{api}jobs/{job_id}/submit/", headers=auth, timeout=10).status_code == 200
        return job_id

    return _run


@pytest.fixture
def wait_status(api, auth) -> Callable[..., dict[str, Any]]:
    """Poll /statuses/ until the newest status is `status`; return that status entry."""

    def _wait(job_id: str, status: str = "Completed", timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            newest = requests.get(f"{api}jobs/{job_id}/statuses/", headers=auth, timeout=10).json()["results"]
            if newest and newest[0]["status"] == status:
                return newest[0]
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached {status!r}")

    return _wait


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """The PostgreSQL databases a test made (pgkit) go when it ends."""
    yield
    pgkit.drop_databases()


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty PostgreSQL database's URL (CI's cluster, else one started for this run)."""
    return pgkit.server().new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def state_location(request, tmp_path) -> Path | str:
    """Where a test's store lives, once per backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "state" / "agent.db"
    return request.getfixturevalue("postgres_url")
