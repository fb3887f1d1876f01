"""Submit stages alone: create, reconcile, tag, project, submit, each with the API calls it makes."""

from __future__ import annotations

import contextlib

import pytest
from jobkit import BODY, make_job, plan
from stagekit import FakeClient, stage_context, walked

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.pipeline.submit import RESTAGE_REASON, assign_project, create, submit, tag
from burst_agent.record import Inputs
from burst_agent.rescale.errors import AuthenticationError, NotFoundError, ValidationError

S = JobState
KEY = "burst-t-e"  # make_job's reconcile key for entry "e"


@pytest.fixture
def ctx(tmp_path):
    with stage_context(tmp_path, FakeClient(), {"agent": {"organization": "org1"}}) as ctx:
        yield ctx


def test_a_staged_job_is_created_once_with_its_inputs_and_the_placement(ctx):
    ctx.client.answers["create_job"] = {"id": "R9"}
    inputs = Inputs(("bundle1", "large2"), {}, "place-large-files", {})
    job = create(ctx, make_job(ctx.store, "e", S.STAGED, inputs=inputs))
    ((name, (body,)),) = ctx.client.calls
    analysis = body["jobanalyses"][0]
    assert name == "create_job" and body["name"] == BODY["name"]
    assert analysis["inputFiles"] == [{"id": "bundle1"}, {"id": "large2"}]
    assert analysis["command"] == "place-large-files\nbash ./burst_job.sh"
    assert analysis["hardware"] == BODY["jobanalyses"][0]["hardware"]
    assert (job.state, job.remote_job_id) == (S.CREATED, "R9")
    assert walked(ctx.store, job.id)[-3:] == [S.STAGED, S.CREATING, S.CREATED]


def test_an_interrupted_create_adopts_the_job_found_by_its_key_and_creates_nothing(ctx):
    ctx.client.answers["iter_jobs"] = [{"id": "R7", "name": f"sim [{KEY}]"}]
    job = create(ctx, make_job(ctx.store, "e", S.CREATING))
    assert ctx.client.calls == [("iter_jobs", ({"q": KEY},))]
    assert (job.state, job.remote_job_id) == (S.CREATED, "R7")


def test_an_interrupted_create_found_nowhere_scans_the_active_list_then_creates(ctx):
    ctx.client.answers.update(iter_jobs=[{"id": "R8", "name": f"other [{KEY}2]"}], create_job={"id": "R9"})
    job = create(ctx, make_job(ctx.store, "e", S.CREATING))
    searches = [("iter_jobs", ({"q": KEY},)), ("iter_jobs", ({"state": "not_completed"},))]
    assert ctx.client.calls[:2] == searches and ctx.client.names()[2:] == ["create_job"]
    assert (job.state, job.remote_job_id) == (S.CREATED, "R9")


def test_a_created_job_is_tagged_with_its_reconcile_key(ctx):
    job = tag(ctx, make_job(ctx.store, "e", S.CREATED))
    assert ctx.client.calls == [("add_tag", ("R-e", KEY))]
    assert job.state is S.TAGGED


def test_a_tagged_job_with_a_project_gets_it_before_submit(ctx):
    job = assign_project(ctx, make_job(ctx.store, "e", S.TAGGED, job_plan=plan(project="P1")))
    assert ctx.client.calls == [("set_job_project", ("R-e", "P1", {"organization": "org1"}))]
    assert job.state is S.PROJECT_SET


def test_a_tagged_job_without_a_project_is_submitted_straight_away(ctx):
    job = assign_project(ctx, make_job(ctx.store, "e", S.TAGGED))
    assert ctx.client.calls == [("submit_job", ("R-e",))]
    assert walked(ctx.store, job.id)[-3:] == [S.TAGGED, S.SUBMITTING, S.SUBMITTED]


def test_a_project_without_an_organization_is_not_set(tmp_path):
    with stage_context(tmp_path) as ctx:
        job = assign_project(ctx, make_job(ctx.store, "e", S.TAGGED, job_plan=plan(project="P1")))
        assert ctx.client.names() == ["submit_job"] and job.state is S.SUBMITTED


def test_an_interrupted_submit_that_landed_is_not_sent_again(ctx):
    ctx.client.answers["job_statuses"] = [{"status": "Pending", "statusDate": "2026-01-01T00:00:00"}]
    job = submit(ctx, make_job(ctx.store, "e", S.SUBMITTING))
    assert ctx.client.calls == [("job_statuses", ("R-e",))]
    assert job.state is S.SUBMITTED


def test_an_interrupted_submit_that_never_landed_is_sent(ctx):
    ctx.client.answers["job_statuses"] = []
    job = submit(ctx, make_job(ctx.store, "e", S.SUBMITTING))
    assert ctx.client.calls == [("job_statuses", ("R-e",)), ("submit_job", ("R-e",))]
    assert job.state is S.SUBMITTED


def test_a_refused_submit_that_did_land_counts_as_submitted(ctx):
    ctx.client.answers.update(submit_job=ValidationError("already submitted", status=400),
                              job_statuses=[{"status": "Pending"}])
    job = submit(ctx, make_job(ctx.store, "e", S.PROJECT_SET, job_plan=plan(project="P1")))
    assert ctx.client.names() == ["submit_job", "job_statuses"] and job.state is S.SUBMITTED


def test_a_refused_create_with_a_vanished_cached_input_restages_once_then_fails(ctx):
    ctx.store.remember_upload("key-f1", "f1", 10)
    ctx.client.answers.update(create_job=ValidationError("no such file", status=400),
                              get_file={"id": "f1", "isDeleted": True})
    staged = Inputs(("f1",), {}, "", {"f1": "key-f1"})
    job = create(ctx, make_job(ctx.store, "e", S.STAGED, inputs=staged))
    assert ctx.client.calls[1:] == [("get_file", ("f1",))]
    assert (job.state, job.inputs) == (S.STAGING_IN, None)
    assert ctx.store.history(job.id)[-1].reason == RESTAGE_REASON
    assert ctx.store.cached_upload("key-f1") is None
    job = ctx.store.transition(job.id, S.STAGED, inputs=staged)  # uploaded anew (the same id, here)
    with pytest.raises(PermanentJobError, match="refused again after its vanished cached inputs"):
        create(ctx, job)
    assert ctx.client.names().count("create_job") == 2


def test_a_refused_create_without_vanished_inputs_fails_at_once(ctx):
    ctx.client.answers.update(create_job=ValidationError("bad coretype", status=400),
                              get_file=NotFoundError("missing", status=404))
    with pytest.raises(PermanentJobError, match="Rescale refused the job: bad coretype") as caught:
        create(ctx, make_job(ctx.store, "e", S.STAGED))  # INPUTS: nothing cached, nothing to check
    assert caught.value.stage == "create"
    assert ctx.client.names() == ["create_job"]


def test_when_rescale_refuses_every_job_the_later_ones_wait_instead_of_failing(ctx):
    ctx.client.answers.update(create_job=ValidationError("quota exhausted", status=400))
    outcomes = []
    for entry in "abcdef":
        job = make_job(ctx.store, entry, S.STAGED)
        try:
            outcomes.append(create(ctx, job).state)
        except PermanentJobError as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes == ["PermanentJobError"] * 4 + [S.HELD] * 2 and ctx.protection.active
    assert "protected mode" in ctx.store.get(job.id).result.reason
    ctx.client.answers.update(create_job={"id": "R1"})
    assert create(ctx, make_job(ctx.store, "g", S.STAGED)).state is S.CREATED and not ctx.protection.active


def _revoked(ctx, entries: str) -> list:
    ctx.client.answers.update(create_job=AuthenticationError("token revoked", status=401), iter_jobs=[])
    jobs = []
    for entry in entries:
        job = make_job(ctx.store, entry, S.STAGED)
        with contextlib.suppress(AuthenticationError):
            create(ctx, job)
        jobs.append(ctx.store.get(job.id))
    return jobs


def test_a_revoked_token_holds_the_jobs_that_tried_once_protected_mode_begins(ctx):
    jobs = _revoked(ctx, "abcde")
    assert [job.state for job in jobs] == [S.CREATING] * 4 + [S.HELD] and ctx.protection.active
    retried = create(ctx, jobs[0])  # its retry: no remote job, the probe is not due
    assert retried.state is S.HELD and ctx.client.names().count("create_job") == 5


def test_a_held_job_that_was_refused_before_reconciles_before_it_creates_again(ctx):
    held = _revoked(ctx, "abcde")[-1]
    ctx.client.answers.update(iter_jobs=[{"id": "R5", "name": f"sim [{held.reconcile_key}]"}])
    job = create(ctx, ctx.store.record_reason(held.id, None))
    assert (job.state, job.remote_job_id) == (S.CREATED, "R5")
    assert ctx.client.names().count("create_job") == 5  # the refused five, none more
