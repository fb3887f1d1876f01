"""Fixtures for the chaos tests: the e2e agent rig (a real agent process) against the in-process emulator."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from rig import AgentRig
from workload import fast_rig


@pytest.fixture
def rig(tmp_path, emulator) -> Iterator[AgentRig]:
    agent = fast_rig(tmp_path / "agent", emulator)
    try:
        yield agent
    finally:
        agent.stop()
