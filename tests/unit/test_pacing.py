"""The dispatcher by scope: priorities, budgets per scope, a create's submission token, fairness (pure)."""

from __future__ import annotations

import math

import pytest

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.pacing import (
    Scope,
    Work,
    fair_order,
    next_due_s,
    plan_dispatch,
    wait_estimate_s,
    waiting_note,
)
from burst_agent.rescale.ratelimit import FILE_ACCESS, JOB_SUBMISSION, JOBS_USAGE

S = JobState
PLENTY = {JOB_SUBMISSION: Scope(50, 850), JOBS_USAGE: Scope(300, 76500), FILE_ACCESS: Scope(150, 6120)}


def scopes(**tokens: float) -> dict[str, Scope]:
    return {**PLENTY, **{k.replace("_", "-"): Scope(v, PLENTY[k.replace("_", "-")].per_hour)
                         for k, v in tokens.items()}}


def ids(works: list[Work]) -> list[str]:
    return [w.job_id for w in works]


def test_a_finished_job_is_collected_while_the_submission_scope_is_empty():
    works = [Work(f"new{n}", S.STAGED, 1000, since=n) for n in range(5)] + [Work("done", S.STAGING_OUT, 1000)]
    plan = plan_dispatch(works, scopes(job_submission=0), {}, 0)
    assert ids(plan.go) == ["done"]
    assert ids(plan.waiting[JOB_SUBMISSION]) == ["new0", "new1", "new2", "new3", "new4"]


def test_cancel_then_finish_then_start():
    works = [Work("up", S.TRANSLATED, 1), Work("collect", S.STAGING_OUT, 1, since=5),
             Work("stop", S.RUNNING, 1, cancel=True, since=9)]
    assert ids(plan_dispatch(works, PLENTY, {}, 0).go) == ["stop", "collect", "up"]


def test_a_cancel_goes_even_with_every_scope_spent():
    empty = {name: Scope(0, s.per_hour) for name, s in PLENTY.items()}
    assert ids(plan_dispatch([Work("stop", S.RUNNING, 1, cancel=True)], empty, {}, 0).go) == ["stop"]


def test_creates_go_only_with_submission_tokens_not_held_by_created_jobs():
    works = [Work(f"s{n}", S.STAGED, 1, since=n) for n in range(4)] + [Work("sub", S.PROJECT_SET, 1, since=9)]
    plan = plan_dispatch(works, scopes(job_submission=3.7), {}, holding_submission=1)
    assert ids(plan.go) == ["s0", "s1", "sub"]  # 3 tokens: one held by `sub`, two for new creates
    assert ids(plan.waiting[JOB_SUBMISSION]) == ["s2", "s3"]


def test_uploads_run_only_a_few_jobs_ahead_of_the_submission_tokens():
    works = [Work(f"t{n}", S.TRANSLATED, 1, since=n) for n in range(20)] + [Work("out", S.STAGING_OUT, 2)]
    plan = plan_dispatch(works, scopes(job_submission=2), {}, holding_submission=1, staged_ahead=3)
    assert ids(plan.go) == ["out", "t0", "t1", "t2", "t3", "t4", "t5"]  # 2 tokens + 8 ahead - 1 - 3
    assert len(plan.waiting[JOB_SUBMISSION]) == 14 and plan.ahead == 4


def test_a_download_needs_a_file_access_token_too():
    plan = plan_dispatch([Work("out", S.STAGING_OUT, 1)], scopes(file_access=0), {}, 0)
    assert plan.go == [] and ids(plan.waiting[FILE_ACCESS]) == ["out"]


def test_with_budgets_off_nothing_waits():
    works = [Work(f"s{n}", S.STAGED, 1, since=n) for n in range(3)] + [Work("o", S.STAGING_OUT, 1)]
    plan = plan_dispatch(works, {}, {JOBS_USAGE: 9}, holding_submission=5)
    assert len(plan.go) == 4 and plan.waiting == {}


def test_work_in_flight_counts_against_its_scope():
    works = [Work(f"o{n}", S.STAGING_OUT, 1, since=n) for n in range(3)]
    plan = plan_dispatch(works, scopes(jobs_usage=2.5), {JOBS_USAGE: 1}, 0)
    assert ids(plan.go) == ["o0"] and ids(plan.waiting[JOBS_USAGE]) == ["o1", "o2"]


def test_owners_take_turns_so_an_array_does_not_starve_a_single_job():
    array = [Work(f"a{n}", S.STAGED, 1000, since=n) for n in range(1000)]
    single = Work("b", S.STAGED, 1001, since=2000.0)
    assert ids(fair_order([*array, single]))[:3] == ["a0", "b", "a1"]
    plan = plan_dispatch([*array, single], scopes(job_submission=1), {}, 0)
    assert ids(plan.go) == ["a0"] and ids(plan.waiting[JOB_SUBMISSION])[0] == "b"


def test_wait_estimate_and_note():
    seconds = wait_estimate_s(36, Scope(0.0, 850), holding=0)
    assert round(seconds) == round(37 * 3600 / 850)
    assert waiting_note(JOB_SUBMISSION, 37, seconds) == \
        "waiting for Rescale's submission budget: 37 jobs ahead, about 3 min"


def test_starting_work_leaves_the_floor_of_a_scope_to_finishing_work():
    works = [Work("create", S.STAGED, 1), Work("collect", S.STAGING_OUT, 1, since=5)]
    plan = plan_dispatch(works, scopes(jobs_usage=31), {}, 0, start_floors={JOBS_USAGE: 30.0})
    assert ids(plan.go) == ["collect"] and ids(plan.waiting[JOBS_USAGE]) == ["create"]
    plan = plan_dispatch(works, scopes(jobs_usage=33), {}, 0, start_floors={JOBS_USAGE: 30.0})
    assert ids(plan.go) == ["collect", "create"]  # a create and its tag: two tokens above the floor


def test_a_stage_out_goes_only_with_the_tokens_of_its_fixed_part():
    works = [Work("a", S.STAGING_OUT, 1), Work("b", S.STAGING_OUT, 2, since=1)]
    plan = plan_dispatch(works, scopes(file_access=5), {}, 0)
    assert ids(plan.go) == ["a"] and ids(plan.waiting[FILE_ACCESS]) == ["b"]  # exit code, log, archive
    assert ids(plan_dispatch(works, scopes(file_access=6), {}, 0).go) == ["a", "b"]


def test_a_stage_out_resumed_after_a_spent_scope_needs_one_token_of_it():
    works = [Work("again", S.STAGING_OUT, 1, resumes=FILE_ACCESS), Work("new", S.STAGING_OUT, 2, since=1)]
    plan = plan_dispatch(works, scopes(file_access=1), {}, 0)
    assert ids(plan.go) == ["again"] and ids(plan.waiting[FILE_ACCESS]) == ["new"]


def test_the_dispatcher_knows_when_the_first_waiting_work_has_its_tokens():
    works = [Work("out", S.STAGING_OUT, 1), Work("create", S.STAGED, 2)]
    fast = {**PLENTY, FILE_ACCESS: Scope(0.5, 3600), JOB_SUBMISSION: Scope(0, 7200)}
    plan = plan_dispatch(works, fast, {}, 0)
    assert next_due_s(plan, fast, {}) == pytest.approx(0.5)  # the create's submission token: 1 in 0.5 s
    assert next_due_s(plan_dispatch(works[:1], fast, {}, 0), fast, {}) == pytest.approx(2.5)  # 3 tokens
    assert next_due_s(plan_dispatch([], fast, {}, 0), fast, {}) == math.inf
