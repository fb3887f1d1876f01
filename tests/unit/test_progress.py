"""Transfer progress: parallel files summed, written at most once a second, shown by status."""

from __future__ import annotations

from jobkit import make_job

from burst_agent.jobview import transfer
from burst_agent.pipeline.progress import TransferProgress
from burst_agent.store import JobStore


def test_progress_sums_files_and_throttles_writes(tmp_path):
    store = JobStore(tmp_path / "state.db")
    job = make_job(store, "e1")
    now = [100.0]
    tracker = TransferProgress(store, job.id, clock=lambda: now[0])
    a, b = tracker.for_file("a"), tracker.for_file("b")
    a(10, 100)
    b(0, 300)  # within the same second: not written yet
    assert store.get(job.id).progress.transfer_total == 100
    now[0] += 1.0
    b(150, 300)
    record = store.get(job.id)
    assert (record.progress.transfer_done, record.progress.transfer_total) == (160, 400)
    assert transfer(record) == "160 B / 400 B (40%)"
    tracker.finish()
    assert transfer(store.get(job.id)) is None
