"""Protected mode end to end: while Rescale refuses every create (a revoked token), new jobs wait with the
reason in their output file instead of failing, and all of them run once the token works again."""

from __future__ import annotations

from rig import AgentRig
from test_core_cap import _metrics
from waiting import wait_until

from burst_agent.lifecycle import JobState

SCRIPT = "#!/bin/bash\necho {name} ran\n"
REVOKED = {"fault_401": 1.0, "methods": ["POST"], "path_pattern": "/api/v2/jobs/"}


def _held(rig: AgentRig, entries: list) -> list:
    return [e for e in entries if rig.job(e).state is JobState.HELD]


def test_jobs_wait_while_every_create_is_refused_and_run_when_it_works_again(tmp_path, emulator):
    rig = AgentRig(tmp_path, emulator, extra_config={"agent": {"protected_mode_probe_s": 2}})
    emulator.faults.update(REVOKED)
    try:
        works = {n: rig.workdir(f"w{n}") for n in range(8)}
        rig.start()
        entries = [rig.submit(SCRIPT.format(name=f"job{n}"), wd, job_id=str(n)) for n, wd in works.items()]
        wait_until(lambda: "burst_agent_protected_mode 1.0" in _metrics(rig), 60, "protected mode")
        # Every job waits held, those whose create was refused too; one at a time leaves as the probe.
        held = wait_until(lambda: _held(rig, entries) if len(_held(rig, entries)) >= 6 else None, 30,
                          "jobs held")
        job = rig.job(held[0])
        assert "protected mode" in job.result.reason
        log = works[int(job.origin.scheduler_job_id)] / f"slurm-{job.origin.scheduler_job_id}.out"
        assert "burst-agent: Rescale refuses new jobs" in log.read_text()  # told once, as it was held
        assert not [e for e in entries if rig.job(e).terminal]  # none failed
        emulator.faults.update({"fault_401": 0.0, "methods": [], "path_pattern": ""})
        finished = [rig.wait_terminal(e, timeout=120) for e in entries]
        assert {j.state for j in finished} == {JobState.DONE}
        assert "burst_agent_protected_mode 0.0" in _metrics(rig)
    finally:
        emulator.faults.update({"fault_401": 0.0, "methods": [], "path_pattern": ""})
        rig.stop()
