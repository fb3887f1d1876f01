"""Chaos: the agent SIGKILLed at random 2-5 s intervals while N jobs run; nothing lost, nothing doubled.

Long run: BURST_CHAOS_JOBS=200 (see docs/reliability.md). BURST_CHAOS_SEED picks another kill schedule.
"""

from __future__ import annotations

import random
import time

import pytest
from workload import Run, audit, env_int, make_workload

JOBS = env_int("BURST_CHAOS_JOBS", 30)
SEED = env_int("BURST_CHAOS_SEED", 20240611)
KILL_EVERY_S = (2.0, 5.0)


@pytest.mark.timeout(120 + JOBS * 12)
def test_random_sigkills_lose_nothing_and_duplicate_nothing(rig):
    rng = random.Random(SEED)
    run = Run(rig, make_workload(JOBS, SEED))
    batch = max(1, JOBS // 6)  # jobs keep arriving while the agent keeps dying
    run.submit(batch)
    rig.start()
    kills, deadline = 0, time.monotonic() + 60 + JOBS * 10
    while not run.all_terminal():
        if time.monotonic() > deadline:
            break  # wait_all below reports what is stuck
        time.sleep(rng.uniform(*KILL_EVERY_S))
        if run.all_terminal():
            break
        rig.proc.kill()
        rig.wait_exit()
        kills += 1
        run.submit(len(run.entries) + batch)
        rig.start()
    run.wait_all(timeout=60)
    result = audit(run)
    print(f"chaos: {JOBS} jobs, {kills} SIGKILLs, {result.outputs_checked} outputs checked, "
          f"{rig.emulator.stats()['jobsCreated']} remote jobs created")
    assert kills >= 3, "the agent was hardly killed: the test proved nothing"
    assert result.problems == [], "\n".join(result.problems)
    assert rig.emulator.stats()["jobsCreated"] == JOBS
    assert result.outputs_checked >= JOBS // 2
    assert rig.spool.list_incoming() == []
