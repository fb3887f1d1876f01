"""cancel_step alone: what each state's cancel sends to Rescale, and the grace before force-stop."""

from __future__ import annotations

import pytest
from jobkit import make_job
from stagekit import Clock, FakeClient, stage_context

from burst_agent.lifecycle import LOCAL_ONLY, UNSUBMITTED, JobState
from burst_agent.pipeline.cancel import cancel_step, vanished_reason
from burst_agent.rescale.errors import NotFoundError

S = JobState
GRACE = 60.0
GONE = NotFoundError("no such job", status=404)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ctx(tmp_path, clock):
    with stage_context(tmp_path, FakeClient(), {"agent": {"stop_grace_s": GRACE}}, clock=clock) as ctx:
        yield ctx


def cancelling(ctx, state):
    job = make_job(ctx.store, "e", state)
    return ctx.store.request_cancel(job.id, ctx.clock())


@pytest.mark.parametrize("state", sorted(LOCAL_ONLY))
def test_a_job_with_nothing_remote_is_cancelled_without_an_api_call(ctx, state):
    job = cancel_step(ctx, cancelling(ctx, state))
    assert (job.state, ctx.client.calls) == (S.CANCELLED, [])
    assert ctx.store.history(job.id)[-1].reason == "cancelled before the remote job existed"


@pytest.mark.parametrize("state", sorted(UNSUBMITTED))
def test_a_saved_remote_job_is_deleted_then_the_job_cancelled(ctx, state):
    job = cancel_step(ctx, cancelling(ctx, state))
    assert ctx.client.calls == [("delete_job", ("R-e",))]
    assert job.state is S.CANCELLED


@pytest.mark.parametrize("state", [S.CREATING, S.SUBMITTING])
def test_an_unfinished_create_or_submit_is_left_to_finish_first(ctx, state):
    job = cancel_step(ctx, cancelling(ctx, state))
    assert (job.state, ctx.client.calls) == (state, [])


@pytest.mark.parametrize("state", [S.SUBMITTED, S.QUEUED, S.RUNNING])
def test_a_live_remote_job_is_stopped(ctx, state):
    job = cancel_step(ctx, cancelling(ctx, state))
    assert ctx.client.calls == [("stop_job", ("R-e",))]
    assert job.state is S.STOPPING


def test_a_stop_waits_out_the_grace_then_force_stops(ctx, clock):
    stopping = cancel_step(ctx, cancelling(ctx, S.RUNNING))
    clock.now += GRACE
    assert cancel_step(ctx, stopping).state is S.STOPPING
    assert ctx.client.names() == ["stop_job"]
    clock.now += 1
    job = cancel_step(ctx, stopping)
    assert ctx.client.calls[1:] == [("force_stop_job", ("R-e",))]
    assert (job.state, job.entered_at) == (S.FORCE_STOPPING, clock.now)


def test_a_force_stop_is_repeated_every_grace_period(ctx, clock):
    job = cancelling(ctx, S.FORCE_STOPPING)
    clock.now += GRACE / 2
    assert cancel_step(ctx, job) == job and ctx.client.calls == []
    clock.now += GRACE
    again = cancel_step(ctx, job)
    assert ctx.client.calls == [("force_stop_job", ("R-e",))]
    assert (again.state, again.entered_at) == (S.FORCE_STOPPING, clock.now)


def test_a_stop_answered_404_for_a_job_gone_on_rescale_cancels_it(ctx):
    ctx.client.answers.update(stop_job=GONE, job_statuses=GONE)
    job = cancel_step(ctx, cancelling(ctx, S.RUNNING))
    assert ctx.client.calls == [("stop_job", ("R-e",)), ("job_statuses", ("R-e",))]
    assert job.state is S.CANCELLED
    assert job.result.reason == f"cancelled; {vanished_reason('R-e')}"
    assert "no longer exists" in job.result.reason


def test_a_404_on_stop_of_a_job_that_still_exists_is_raised_and_nothing_moves(ctx):
    ctx.client.answers.update(stop_job=GONE, job_statuses=[{"status": "Executing"}])
    job = cancelling(ctx, S.RUNNING)
    with pytest.raises(NotFoundError):
        cancel_step(ctx, job)
    assert ctx.store.get(job.id).state is S.RUNNING


def test_a_delete_answered_404_for_a_job_gone_on_rescale_cancels_it(ctx):
    ctx.client.answers.update(delete_job=GONE, job_statuses=GONE)
    job = cancel_step(ctx, cancelling(ctx, S.TAGGED))
    assert ctx.client.names() == ["delete_job", "job_statuses"]
    assert (job.state, job.result.reason) == (S.CANCELLED, f"cancelled; {vanished_reason('R-e')}")
