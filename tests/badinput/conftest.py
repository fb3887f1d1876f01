"""Fixtures for the bad-input tests: a module-wide emulator and agent rig, entry placement helpers."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from rig import AgentRig

from burst_agent.rescale.emulator import EmulatorHandle, start_emulator
from burst_agent.spool import Spool

TEST_TOKEN = "badinput-emulator-token-0123456789"


def place(spool: Spool, name: str, build, mtime: float) -> Path:  # type: ignore[no-untyped-def]
    """Build an entry in tmp/ and rename it into incoming/<name> (as producers do), with a set mtime."""
    staging = spool.tmp / f"build-{abs(hash(name))}"
    build(staging)
    dest = spool.incoming / name
    os.rename(staging, dest)
    os.utime(dest, ns=(int(mtime * 1e9),) * 2, follow_symlinks=False)
    return dest


@pytest.fixture(scope="module")
def module_emulator(tmp_path_factory) -> Iterator[EmulatorHandle]:
    handle = start_emulator(tmp_path_factory.mktemp("emulator"), TEST_TOKEN, step_seconds=0.05,
                            stop_grace_seconds=1.0)
    try:
        yield handle
    finally:
        handle.stop()


def make_rig(root: Path, emulator: EmulatorHandle, **extra) -> AgentRig:  # type: ignore[no-untyped-def]
    root.mkdir(parents=True)
    return AgentRig(root, emulator, extra_config=extra)


def past(seconds: float) -> float:
    return time.time() - seconds
