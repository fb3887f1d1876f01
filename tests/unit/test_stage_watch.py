"""The watch alone: the pure interpret / missing / merge, and the calls one poll cycle makes."""

from __future__ import annotations

from datetime import datetime

import pytest
from jobkit import make_job
from stagekit import FakeClient, stage_context

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.watch import GONE, LIST_PAGE_SIZE, Seen, interpret, merge, missing, poll
from burst_agent.record import Remote

S = JobState
NOW = 5_000.0
STARTED, ENDED = "2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"
COMPLETED = [  # newest first, as /statuses/ answers
    {"status": "Completed", "statusReason": "Completed successfully", "statusDate": ENDED},
    {"status": "Executing", "statusDate": STARTED},
    {"status": "Pending", "statusDate": "2026-01-01T00:00:00+00:00"},
]
WINDOW = {"started_at": datetime.fromisoformat(STARTED).timestamp(),
          "finished_at": datetime.fromisoformat(ENDED).timestamp()}


def listed(remote_id, status, cluster=None):
    item = {"id": remote_id, "jobStatus": {"content": status}}
    return item | ({"clusterStatusDisplay": {"content": cluster}} if cluster else {})


@pytest.fixture
def ctx(tmp_path):
    with stage_context(tmp_path, FakeClient()) as ctx:
        yield ctx


def test_a_listed_status_change_is_seen_with_its_cluster_status():
    active = [("j1", "R1", S.QUEUED, "Waiting for Cluster")]
    seen = interpret(active, {"R1": listed("R1", "Executing", "Running")}, {})
    assert seen == [Seen("j1", "Executing", None, "Running")]


def test_an_unchanged_listed_status_is_no_change():
    active = [("j1", "R1", S.RUNNING, "Executing")]
    assert interpret(active, {"R1": listed("R1", "Executing")}, {}) == []


def test_only_jobs_missing_from_the_listing_need_their_statuses():
    active = [("j1", "R1", S.RUNNING, "Executing"), ("j2", "R2", S.RUNNING, "Executing")]
    assert missing(active, {"R1": listed("R1", "Executing")}) == ["R2"]
    assert missing([], {}) == []


def test_a_missing_job_completed_per_its_statuses_is_seen_with_its_run_window():
    (seen,) = interpret([("j2", "R2", S.RUNNING, "Executing")], {}, {"R2": COMPLETED})
    assert (seen.status, seen.reason, dict(seen.window)) == ("Completed", "Completed successfully", WINDOW)
    assert not (seen.gone or seen.missing)


def test_a_missing_job_whose_statuses_say_404_is_gone_and_one_not_fetched_is_skipped():
    active = [("j2", "R2", S.RUNNING, "Executing"), ("j3", "R3", S.RUNNING, "Executing")]
    assert interpret(active, {}, {"R2": GONE}) == [Seen("j2", gone=True)]


def test_a_missing_job_not_completed_per_its_statuses_is_only_missing():
    seen = interpret([("j2", "R2", S.RUNNING, "Executing")], {}, {"R2": [{"status": "Executing"}]})
    assert seen == [Seen("j2", "Executing", missing=True)]


def test_merge_moves_a_completed_job_to_staging_out_with_the_run_window(ctx):
    job = make_job(ctx.store, "e", S.RUNNING)
    seen = Seen(job.id, "Completed", "Completed successfully", None, WINDOW)
    assert merge(job, seen, NOW) == (S.STAGING_OUT, Remote("Completed", "Completed successfully", **WINDOW))


def test_merge_stamps_the_start_of_execution_once(ctx):
    job = make_job(ctx.store, "e", S.QUEUED)
    assert merge(job, Seen(job.id, "Executing"), NOW) == (S.RUNNING, Remote("Executing", started_at=NOW))
    job = ctx.store.record_remote(job.id, Remote("Waiting for Cluster", started_at=1.0))  # a restart
    assert merge(job, Seen(job.id, "Executing"), NOW) == (S.RUNNING, Remote("Executing", started_at=1.0))


def test_merge_of_a_status_of_the_same_state_records_it_without_a_move(ctx):
    job = make_job(ctx.store, "e", S.RUNNING)
    assert merge(job, Seen(job.id, "Validated"), NOW) == (None, Remote("Validated"))


def test_merge_records_executing_on_a_stopping_job_without_moving_it(ctx):
    job = make_job(ctx.store, "e", S.STOPPING)
    target, remote = merge(job, Seen(job.id, "Executing"), NOW)
    assert (target, remote.status) == (None, "Executing")


def test_merge_of_an_unknown_status_records_it_and_moves_nothing(ctx):
    job = make_job(ctx.store, "e", S.RUNNING)
    assert merge(job, Seen(job.id, "Frobnicating"), NOW) == (None, Remote("Frobnicating"))


def test_one_poll_cycle_lists_once_and_asks_statuses_only_of_the_missing_job(ctx):
    listed_job = make_job(ctx.store, "a", S.SUBMITTED)
    done_job = make_job(ctx.store, "b", S.RUNNING)
    ctx.client.answers.update(iter_jobs=[listed("R-a", "Executing")], job_statuses=COMPLETED)
    assert poll(ctx) == 1
    assert ctx.client.calls == [("iter_jobs", ({"state": "not_completed", "page_size": LIST_PAGE_SIZE},)),
                                ("job_statuses", ("R-b",))]
    assert ctx.store.get(listed_job.id).state is S.RUNNING
    assert ctx.store.get(done_job.id).state is S.STAGING_OUT
    ctx.client.calls.clear()
    assert poll(ctx) == 0 and ctx.client.names() == ["iter_jobs"]  # nothing changed, nothing missing


def test_a_poll_records_executing_on_a_stopping_job_and_leaves_it_stopping(ctx):
    job = make_job(ctx.store, "e", S.STOPPING)
    ctx.client.answers["iter_jobs"] = [listed("R-e", "Executing")]
    assert poll(ctx) == 0
    after = ctx.store.get(job.id)
    assert (after.state, after.remote.status, after.entered_at) == (S.STOPPING, "Executing", job.entered_at)
