"""agent.max_cloud_cores end to end: jobs wait for cores provisioned on Rescale, not tasks x cpus."""

from __future__ import annotations

import json

import requests
from rig import AgentRig
from waiting import wait_until

from burst_agent.lifecycle import JobState

# One task of one cpu (1 license in Slurm); the memory makes the translation pick 8 (64G) or 16 cores.
SCRIPT = "#!/bin/bash\n#SBATCH --mem={mem}\necho {name} ran\nsleep {sleep}\n"
MESSAGE = "burst-agent: waiting for cloud cores: this job needs 8, 8 of the site's 8 are in use\n"


def _metrics(rig) -> str:
    def port():
        lines = [line for line in rig.logs().splitlines() if '"metrics endpoint up"' in line]
        return json.loads(lines[0])["port"] if lines else None

    return requests.get(f"http://127.0.0.1:{wait_until(port, 20, 'metrics')}/metrics", timeout=5).text


def _at(rig, job_id: str, state: JobState) -> float:
    with rig.store() as store:
        return next(t.at for t in store.history(job_id) if t.to_state is state)


def test_a_job_waits_for_cloud_cores_and_one_over_the_cap_fails_at_once(tmp_path, emulator):
    (tmp_path / "cap").mkdir()
    rig = AgentRig(tmp_path / "cap", emulator, extra_config={"agent": {"max_cloud_cores": 8}})
    try:
        works = {name: rig.workdir(name) for name in ("first", "second", "big")}
        rig.start()
        first = rig.submit(SCRIPT.format(mem="64G", name="first", sleep=6), works["first"], job_id="1")
        rig.wait_job(first, lambda j: j.remote_job_id is not None, what="the first remote job")
        second = rig.submit(SCRIPT.format(mem="64G", name="second", sleep=0), works["second"], job_id="2")
        held = rig.wait_job(second, lambda j: j.state is JobState.HELD, what="the second job held")
        assert held.remote_job_id is None and held.plan.cores_per_slot == 8
        assert "burst_agent_cloud_cores_in_use 8.0" in (text := _metrics(rig))
        assert "burst_agent_cloud_cores_cap 8.0" in text
        big = rig.wait_terminal(rig.submit(SCRIPT.format(mem="128G", name="big", sleep=0), works["big"],
                                           job_id="3"), timeout=20)
        assert big.state is JobState.FAILED and big.remote_job_id is None
        assert "needs 16 cloud cores" in big.result.reason and "agent.max_cloud_cores" in big.result.reason
        assert not rig.job(first).terminal  # it failed at once, not after waiting
        done = rig.wait_terminal(second)
        assert (done.state, done.result.exit_code) == (JobState.DONE, 0)
        assert _at(rig, done.id, JobState.CREATED) >= _at(rig, rig.job(first).id, JobState.DONE)
        log = (works["second"] / "slurm-2.out").read_text()
        assert log.startswith(MESSAGE) and log.count("waiting for cloud cores") == 1 and "second ran" in log
        assert "waiting for cloud cores" not in (works["first"] / "slurm-1.out").read_text()
        assert emulator.stats()["jobsCreated"] == 2
    finally:
        rig.stop()
