"""Crash points for the restart tests: BURST_AGENT_FAILPOINTS=name[,name] SIGKILLs the agent there."""

from __future__ import annotations

import os
import signal

ENV = "BURST_AGENT_FAILPOINTS"
_ARMED = frozenset(filter(None, os.environ.get(ENV, "").split(",")))


def hit(name: str) -> None:
    """Die at once, as a power cut would, if the test armed this point (a no-op otherwise)."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
