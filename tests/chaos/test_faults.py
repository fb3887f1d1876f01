"""Faults: the chaos workload through injected 429s, 500s, dropped connections, cut downloads, lost replies.

Long run: BURST_CHAOS_JOBS=200 (see docs/reliability.md).
"""

from __future__ import annotations

import pytest
from workload import Run, audit, env_int, make_workload

JOBS = env_int("BURST_CHAOS_JOBS", 30)
SEED = env_int("BURST_CHAOS_SEED", 20240611)


def _run_clean(rig, jobs: int, timeout: float) -> None:
    run = Run(rig, make_workload(jobs, SEED))
    run.submit(jobs)
    rig.start()
    run.wait_all(timeout)
    result = audit(run)
    print(f"faults: {jobs} jobs, {result.outputs_checked} outputs checked, {rig.emulator.stats()}")
    assert result.problems == [], "\n".join(result.problems)
    assert result.outputs_checked >= jobs // 2
    assert rig.emulator.stats()["jobsCreated"] == jobs


@pytest.mark.timeout(120 + JOBS * 12)
def test_fault_mix_every_job_completes_correctly(rig):
    rig.emulator.set_faults(fault_429=0.10, fault_500=0.05, fault_drop=0.02, fault_truncate=0.01,
                            retry_after=1, seed=SEED)
    _run_clean(rig, JOBS, timeout=60 + JOBS * 10)
    injected = rig.emulator.stats()["faultsInjected"]
    assert min(injected.get(k, 0) for k in ("fault_429", "fault_500", "fault_drop")) > 0, injected


def test_cut_downloads_never_deliver_a_corrupt_output(rig):
    # A third of all file reads stop half way through a body that announced its full length.
    rig.emulator.set_faults(fault_truncate=0.3, methods=["GET"], path_prefix="/api/v2/files/", seed=SEED)
    _run_clean(rig, 10, timeout=180)
    assert rig.emulator.stats()["faultsInjected"]["fault_truncate"] > 3


# Only the matching requests roll the seeded RNG, so each test's faults do not depend on thread timing.
LOST_REPLY_TARGETS = {
    "create": ("/api/v2/jobs/", "remote job reconciled after an interrupted create"),
    "submit": ("/api/v2/jobs/[^/]+/submit/", "remote job reconciled after an interrupted submit"),
}


@pytest.mark.parametrize("target", sorted(LOST_REPLY_TARGETS))
def test_lost_replies_make_no_duplicates(rig, target):
    # The server does the work, then the connection drops: the agent cannot know whether it happened.
    pattern, message = LOST_REPLY_TARGETS[target]
    rig.emulator.set_faults(fault_lost_reply=0.4, methods=["POST"], path_pattern=pattern, seed=SEED)
    _run_clean(rig, 10, timeout=180)
    lost = rig.emulator.stats()["faultsInjected"].get("fault_lost_reply", 0)
    assert lost >= 2
    assert rig.logs().count(message) == lost
