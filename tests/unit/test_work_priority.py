"""Workers take a cancel first, then a finishing job, then the rest (a relay has only KillWait)."""

from __future__ import annotations

import queue
from types import SimpleNamespace

from burst_agent.agent import work_priority
from burst_agent.lifecycle import JobState


def test_a_cancel_then_a_stage_out_go_before_earlier_work():
    jobs = [SimpleNamespace(name="upload", state=JobState.TRANSLATED, cancel_requested_at=None),
            SimpleNamespace(name="collect", state=JobState.STAGING_OUT, cancel_requested_at=None),
            SimpleNamespace(name="stop", state=JobState.RUNNING, cancel_requested_at=1.0)]
    work: queue.PriorityQueue = queue.PriorityQueue()
    for seq, job in enumerate(jobs):
        work.put((work_priority(job), seq, job.name))
    assert [work.get()[2] for _ in jobs] == ["stop", "collect", "upload"]
