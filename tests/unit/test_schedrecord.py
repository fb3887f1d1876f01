"""The scheduler record of a burst job's remote life: phase by state and remote status, fields, one line."""

import pytest
from jobkit import S, make_job
from stagekit import open_store

from burst_agent.record import Remote, Result
from burst_agent.schedrecord import phase, record_text

T0 = 1_764_694_800.0  # 2025-12-02T17:00:00Z


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "state.db") as store:
        yield store


@pytest.mark.parametrize(("status", "expected"), [
    ("Queued", "queued on Rescale"), ("Started", "starting cluster"),
    ("Executing", "executing on emerald x4 x1"), ("Completed", "finishing"), ("Oddity", "running on Rescale"),
])
def test_a_running_job_shows_its_remote_phase(store, status, expected):
    job = store.record_remote(make_job(store, "a", S.RUNNING).id, Remote(status=status))
    assert phase(job) == expected


def test_a_finished_job_carries_its_rescale_job_shape_window_and_cost(store):
    job = make_job(store, "b", S.STAGING_OUT, remote_job_id="AbCd")
    job = store.record_remote(job.id, Remote(status="Completed", started_at=T0, finished_at=T0 + 1800))
    job = store.transition(job.id, S.DONE, "done", result=Result(exit_code=3))
    assert record_text(job, T0 + 9999) == (
        "completed (exit 3) | rescale=AbCd coretype=emerald cores=4x1 start=2025-12-02T17:00:00Z "
        "end=2025-12-02T17:30:00Z run_s=1800 cost~=0.2000")  # 0.10/core-hour x 4 cores x 0.5 h


def test_before_a_remote_job_exists_there_is_only_the_phase_and_a_reason_stays_on_one_line(store):
    assert record_text(make_job(store, "c", S.STAGING_IN), T0) == "uploading inputs"
    held = store.transition(make_job(store, "d", S.STAGED).id, S.HELD, "held",
                            result=Result(reason="cloud cores\nfull"))
    assert record_text(held, T0) == "held: cloud cores full"
