"""Default-style budgets with a small submission scope: finished jobs are not held behind submissions.

40 jobs dropped at once against a job-submission scope of 1,800/h with a burst of 5 (at 85 %, one
submit every 2.4 s): most jobs wait for the scope, and say so in their log, while the first jobs to
finish remotely have their outputs back within 10 s. No request sleeps in the submission bucket.
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest
import requests
from rig import AgentRig
from test_agent_ops import _metrics_port
from waiting import wait_until

from burst_agent.lifecycle import JobState
from burst_agent.rescale.client import RescaleClient
from burst_agent.secret import Token

JOBS = 40
BUDGETS = {"rate_limits": {"job_submission_per_hour": 1800, "job_submission_burst": 5}}


@pytest.fixture
def paced(tmp_path, emulator):
    (tmp_path / "agent").mkdir()
    agent = AgentRig(tmp_path / "agent", emulator, extra_config={"api": BUDGETS})
    try:
        yield agent
    finally:
        agent.stop()


def _completed_at(emulator, remote_id: str) -> float:
    with RescaleClient(emulator.url, Token(emulator.token)) as client:
        done = next(s for s in client.job_statuses(remote_id) if s["status"] == "Completed")
    return datetime.fromisoformat(done["statusDate"]).timestamp()


def test_first_finished_job_is_collected_within_10s_while_submissions_wait(paced):
    entries = [paced.submit("#!/bin/bash\nsleep 2\necho done > d.txt\n", paced.workdir(f"j{n}"),
                            job_id=str(100 + n)) for n in range(JOBS)]
    paced.start()
    first = wait_until(lambda: next((e for e in entries if (j := paced.job(e)) and j.state is JobState.DONE),
                                    None), 60, "a first job done")
    job = paced.job(first)
    with paced.store() as store:
        done_at = next(t.at for t in store.history(job.id) if t.to_state is JobState.DONE)
    assert done_at - _completed_at(paced.emulator, job.remote_job_id) <= 10.0
    queued = (JobState.TRANSLATED, JobState.STAGED)  # waiting to start its uploads, or to be created
    waiting = [j for e in entries if (j := paced.job(e)) and j.state in queued]
    assert len(waiting) >= 20, [paced.job(e).state for e in entries]
    late = waiting[-1]
    note = r"waiting for Rescale's submission budget: \d+ jobs? ahead, about \d+ min"
    assert re.match(note, late.result.reason)
    log = paced.root / "work" / f"j{entries.index(late.entry)}" / f"slurm-{late.origin.scheduler_job_id}.out"
    assert "burst-agent: waiting for Rescale's submission budget" in log.read_text()
    text = requests.get(f"http://127.0.0.1:{_metrics_port(paced)}/metrics", timeout=5).text
    slept = re.search(r'^burst_agent_api_budget_wait_seconds_total\{scope="job-submission"\} (\S+)$', text,
                      re.M)
    assert slept and float(slept.group(1)) == 0.0  # a submit never sleeps: it waits in the queue
    assert re.search(r'^burst_agent_api_budget_waiting_jobs\{scope="job-submission"\} ([1-9]\d*)', text, re.M)

