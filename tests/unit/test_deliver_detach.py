"""`deliver --detach` outlives the epilog: slurmd kills the epilog's process group the moment it ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

# The detached child writes its session id only once the test has killed the epilog's group (argv[2]).
CHILD = ("import os, sys, time\nfrom burst_agent.commands.deliver import detached\n"
         "if detached():\n    deadline = time.monotonic() + 20\n"
         "    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:\n"
         "        time.sleep(0.01)\n"
         "    open(sys.argv[1], 'w').write(str(os.getsid(0)))\n")


def test_the_delivery_survives_a_kill_of_the_epilogs_process_group(tmp_path):
    mark, killed = tmp_path / "alive", tmp_path / "killed"
    epilog = subprocess.Popen([sys.executable, "-c", CHILD, str(mark), str(killed)], start_new_session=True)
    assert epilog.wait(timeout=30) == 0
    with contextlib.suppress(ProcessLookupError):  # empty already when the child left in time
        os.killpg(epilog.pid, signal.SIGKILL)  # what slurmd does when the epilog returns
    killed.touch()
    deadline = time.monotonic() + 20
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mark.exists() and int(mark.read_text()) != epilog.pid
