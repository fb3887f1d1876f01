"""Capacity failover: a job Rescale could not place goes back to STAGED on its plan's next coretype."""

from __future__ import annotations

from dataclasses import replace

import pytest
from jobkit import BODY, make_job, plan
from stagekit import FakeClient, stage_context

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.cooldown import Cooldown
from burst_agent.pipeline.failover import for_new_job, no_capacity, rerouted
from burst_agent.pipeline.submit import find_remote
from burst_agent.record import Hardware, Remote, plan_of

S = JobState
NO_ROOM = "Could not allocate compute resources"
SPARE = Hardware("onyx", 8, 1, plan().price_per_core_hour, {**BODY, "name": "job [burst-t-e-try2]"})


@pytest.fixture
def ctx(tmp_path):
    with stage_context(tmp_path, FakeClient()) as ctx:
        ctx.cooldown = Cooldown(after=2, window_s=600, cooldown_s=3600)
        yield ctx


def _unplaced(ctx, entry="e", fallbacks=(SPARE,), **remote):
    decided = plan(fallbacks=fallbacks, stdout_path=str(ctx.spool.root / f"{entry}.out"))
    job = make_job(ctx.store, entry, S.STAGING_OUT, job_plan=decided)
    return ctx.store.record_remote(job.id, Remote(status="Completed", reason=NO_ROOM, **remote))


def test_only_a_capacity_reason_counts():
    patterns = ("could not allocate compute resources",)
    assert no_capacity(NO_ROOM, patterns) and not no_capacity("Completed successfully", patterns)
    assert not no_capacity(None, patterns)


def test_an_unplaced_job_is_staged_again_on_its_next_coretype_and_told_so(ctx):
    job = rerouted(ctx, _unplaced(ctx))
    assert (job.state, job.attempt, job.remote_job_id, plan_of(job).coretype) == (S.STAGED, 1, None, "onyx")
    assert "trying onyx x8 x1 (attempt 2 of 2)" in (ctx.spool.root / "e.out").read_text()
    assert ctx.metrics.capacity_failovers.labels(coretype="emerald")._value.get() == 1


def test_a_job_that_ran_was_cancelled_or_has_no_fallback_left_ends_as_before(ctx):
    assert rerouted(ctx, _unplaced(ctx, "a", started_at=5.0)) is None
    assert rerouted(ctx, _unplaced(ctx, "b", fallbacks=())) is None
    cancelled = ctx.store.request_cancel(_unplaced(ctx, "c").id, 1.0)
    assert rerouted(ctx, cancelled) is None


def test_a_coretype_cooling_down_is_skipped_for_new_jobs(ctx):
    rerouted(ctx, _unplaced(ctx, "a"))
    rerouted(ctx, _unplaced(ctx, "b"))  # the second emerald failure: cooling down
    fresh = make_job(ctx.store, "n", S.STAGED, job_plan=plan(fallbacks=(SPARE,)))
    assert plan_of(for_new_job(ctx, fresh)).coretype == "onyx"
    ctx.clock.now += 3600
    assert for_new_job(ctx, fresh) is fresh


def test_an_interrupted_create_of_a_later_attempt_is_found_by_that_attempts_key(ctx):
    job = rerouted(ctx, _unplaced(ctx))
    ctx.client.answers["iter_jobs"] = [{"id": "R1", "name": "job [burst-t-e]"},
                                       {"id": "R2", "name": "job [burst-t-e-try2]"}]
    assert find_remote(ctx, replace(job, state=S.CREATING)) == "R2"
    assert ctx.client.calls[0] == ("iter_jobs", ({"q": "burst-t-e-try2"},))
