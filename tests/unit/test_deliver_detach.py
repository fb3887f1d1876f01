"""`deliver --detach` outlives the epilog: slurmd kills the epilog's process group the moment it ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

CHILD = ("import os, sys, time\nfrom burst_agent.commands.deliver import detached\n"
         "if detached():\n    time.sleep(1)\n    open(sys.argv[1], 'w').write(str(os.getsid(0)))\n")


def test_the_delivery_survives_a_kill_of_the_epilogs_process_group(tmp_path):
    mark = tmp_path / "alive"
    epilog = subprocess.Popen([sys.executable, "-c", CHILD, str(mark)], start_new_session=True)
    assert epilog.wait(timeout=30) == 0
    with contextlib.suppress(ProcessLookupError):  # empty already when the child left in time
        os.killpg(epilog.pid, signal.SIGKILL)  # what slurmd does when the epilog returns
    deadline = time.monotonic() + 20
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mark.exists() and int(mark.read_text()) != epilog.pid
