"""Test hooks: BURST_AGENT_FAILPOINTS=name[,name=wait] SIGKILLs the agent at a point, or pauses it there.

`name` dies at once, as a power cut would. `name=wait` (with BURST_AGENT_FAILPOINT_DIR) pauses the
first time the point is reached: it writes `<dir>/<name>.reached` and waits until `<dir>/<name>.go`
exists, so a race test can act at exactly that moment. Unarmed points are no-ops.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

ENV = "BURST_AGENT_FAILPOINTS"
DIR_ENV = "BURST_AGENT_FAILPOINT_DIR"
WAIT_LIMIT_S = 120.0


def _parse(value: str) -> dict[str, str]:
    points = {}
    for item in filter(None, value.split(",")):
        name, _, action = item.partition("=")
        points[name] = action or "kill"
    return points


_ARMED = _parse(os.environ.get(ENV, ""))
_WAITED: set[str] = set()
_LOCK = threading.Lock()


def _wait(name: str) -> None:
    with _LOCK:
        if name in _WAITED:
            return
        _WAITED.add(name)
    directory = Path(os.environ.get(DIR_ENV, "."))
    (directory / f"{name}.reached").touch()
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not (directory / f"{name}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def hit(name: str) -> None:
    """Die or pause here if the test armed this point."""
    action = _ARMED.get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "wait":
        _wait(name)
