"""Fixtures: the PBS hooks of deploy/pbs/ loaded as modules, with the stand-in `pbs` module (fakepbs/)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOKS = REPO / "deploy" / "pbs"
STUB = Path(__file__).with_name("stub_relay.sh")
sys.path.insert(0, str(Path(__file__).with_name("fakepbs")))

import pbs as fake_pbs  # noqa: E402 - the stand-in, found through the path set just above


def load_hook(name: str) -> ModuleType:
    """A fresh copy of deploy/pbs/<name>.py (importing it does not run it: PBS's __name__ is "builtins")."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def pbs() -> ModuleType:
    return fake_pbs


@pytest.fixture
def queuejob() -> ModuleType:
    hook = load_hook("burst_queuejob")
    hook.AGENT_CONFIG = None  # the agent's built-in translate defaults (max 168 h)
    return hook


@pytest.fixture
def launch(tmp_path) -> ModuleType:
    hook = load_hook("burst_launch")
    hook.RUN_DIR = str(tmp_path / "run")
    hook.BURST_AGENT = str(STUB)
    return hook


@pytest.fixture
def run_hook() -> Callable[..., Any]:
    """run_hook(hook, event, default_queue="workq") -> the event, after hook.main() ended it."""

    def run(hook: ModuleType, event: Any, default_queue: str | None = "workq") -> Any:
        fake_pbs._set_event(event, default_queue)
        with pytest.raises(SystemExit):
            hook.main()
        return event

    return run


def qsub_job(queue: str | None = "rescale", **attributes: Any) -> Any:
    """A job as qsub hands it to the server: `qsub -q rescale -l select=2:ncpus=8:mpiprocs=8:mem=16gb ...`."""
    resources = attributes.pop("Resource_List", {
        "select": fake_pbs.select("2:ncpus=8:mpiprocs=8:mem=16gb"),
        "walltime": fake_pbs.duration("02:30:00"),
    })
    values: dict[str, Any] = {
        "Job_Name": "cfd", "Account_Name": "proj-7", "Output_Path": "login1:/home/alice/run/cfd.out",
        "Error_Path": "login1:/home/alice/run/cfd.err", "interactive": 0,
        "Variable_List": {"PBS_O_WORKDIR": "/home/alice/run", "PBS_O_HOME": "/home/alice"},
    }
    values.update(attributes)
    return fake_pbs.job(queue=fake_pbs.queue(queue) if queue else None, Resource_List=resources, **values)


@pytest.fixture
def make_job() -> Callable[..., Any]:
    return qsub_job
