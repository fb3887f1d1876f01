"""500 relays polling one real agent at once: none of them sees an error, and the agent logs none."""

from __future__ import annotations

import io
import threading
import time

from burst_agent.relay import Relay

RELAYS = 500
JOBS = 10
POLL_FOR_S = 20.0


def test_five_hundred_relays_at_once_see_no_error(rig):
    work = rig.workdir("load")
    rig.start()
    entries = [rig.submit("#!/bin/bash\nsleep 120\n", work, job_id=str(100 + n)) for n in range(JOBS)]
    for entry in entries:
        rig.wait_job(entry, lambda j: j.remote_job_id is not None, timeout=120, what="the remote job")
    outs = [io.BytesIO() for _ in range(RELAYS)]
    answers = [0] * RELAYS
    start = threading.Barrier(RELAYS)

    def relay(n: int) -> None:
        one = Relay(rig.spool.root, outs[n], poll_s=1.0)
        start.wait()
        until = time.monotonic() + POLL_FOR_S
        while time.monotonic() < until:
            answer, _ = one.ask({"op": "status", "entry": entries[n % JOBS], "offset": 0})
            answers[n] += answer.get("state") not in (None, "unknown")
            time.sleep(1.0)

    threads = [threading.Thread(target=relay, args=(n,)) for n in range(RELAYS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=POLL_FOR_S + 120)
    said = [out.getvalue().decode() for out in outs if out.getvalue()]
    assert said == [], said[:3]
    assert min(answers) >= POLL_FOR_S / 4, sorted(answers)[:10]
    bad = [line for line in rig.logs().splitlines() if "relay" in line and ('"warning"' in line or
                                                                            '"error"' in line)]
    assert bad == [], bad[:3]
