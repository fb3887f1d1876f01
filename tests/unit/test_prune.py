"""Spool pruning: finished relay jobs' copies expire; live jobs, plain-script results, strangers stay."""

from __future__ import annotations

import pytest
from jobkit import make_job, plan

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.prune import DAY_S, prune_spool
from burst_agent.spool import Spool
from burst_agent.store import JobStore

NOW = 1_800_000_000.0


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool").ensure()


def _job(store: JobStore, spool: Spool, entry: str, delivery: str, finished: bool) -> None:
    job = make_job(store, entry, JobState.TRANSLATED, job_plan=plan(delivery=delivery))
    if finished:
        store.transition(job.id, JobState.FAILED, "test")
    (spool.logs / f"{entry}.log").write_text("remote log\n")
    (spool.results / entry).mkdir()
    (spool.results / entry / "out.txt").write_text("output\n")


def test_only_expired_relay_copies_are_pruned(tmp_path, spool):
    with JobStore(tmp_path / "s.db", clock=lambda: NOW - 15 * DAY_S) as store:
        _job(store, spool, "old-relay", "relay", finished=True)
        _job(store, spool, "old-plain", "plain", finished=True)
        _job(store, spool, "running-relay", "relay", finished=False)
    (spool.logs / "stranger.log").write_text("no job of ours\n")
    with JobStore(tmp_path / "s.db", clock=lambda: NOW) as store:
        _job(store, spool, "new-relay", "relay", finished=True)
        report = prune_spool(store, spool, 14, NOW)
        assert prune_spool(store, spool, 0, NOW + 100 * DAY_S).logs == 0  # 0 keeps everything
    assert (report.logs, report.results) == (1, 1)
    assert not (spool.logs / "old-relay.log").exists() and not (spool.results / "old-relay").exists()
    assert {p.name for p in spool.results.iterdir()} == {"old-plain", "running-relay", "new-relay"}
    assert {p.name for p in spool.logs.iterdir()} == {"old-plain.log", "running-relay.log", "new-relay.log",
                                                     "stranger.log"}
