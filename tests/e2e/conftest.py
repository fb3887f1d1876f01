"""Fixtures for the agent end-to-end tests: the emulator in this process, the agent as a real process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rig import AgentRig


@pytest.fixture
def rig(tmp_path, emulator) -> Iterator[AgentRig]:
    (tmp_path / "agent").mkdir()
    agent = AgentRig(tmp_path / "agent", emulator)
    try:
        yield agent
    finally:
        agent.stop()
