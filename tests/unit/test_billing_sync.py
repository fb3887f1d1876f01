"""The billing reconciliation step with a fake client: each project's CSV read, our jobs' charges stored,
one project's failure kept to itself, no billing access said once and not asked again until tomorrow."""

from decimal import Decimal

import pytest
from jobkit import S, make_job, plan
from stagekit import Clock, FakeClient, stage_context
from test_billing import bill, row

from burst_agent.billing_sync import BillingSync, run_cycle
from burst_agent.record import Remote
from burst_agent.rescale.errors import AuthenticationError, ServerError

APR_10 = 1_712_707_200.0  # 2024-04-10T00:00:00Z
BILLING = {"agent": {"organization": "acme", "workspace": "04-0468913198"}}
CSV = {"P1": bill(row("R-a", "Compute", "$1.50"), row("R-a", "Storage", "$0.25"), total="$1.75"),
       "P2": bill(row("R-b", "Compute", "$0.70"), row("R-zz", "Compute", "$9.00"))}  # R-zz: not ours


def ran(ctx, entry, project):
    job = make_job(ctx.store, entry, S.DONE, job_plan=plan(project=project))
    ctx.store.record_remote(job.id, Remote(status="Completed", started_at=APR_10 - 7200,
                                           finished_at=APR_10 - 3600))


@pytest.fixture
def ctx(tmp_path):
    client = FakeClient(project_billing_csv=lambda org, ws, project: CSV[project],
                        workspace_billing={"totalCharge": 12.5, "jobs": 3})
    with stage_context(tmp_path, client, BILLING, clock=Clock(APR_10)) as ctx:
        ran(ctx, "a", "P1")
        ran(ctx, "b", "P2")
        yield ctx


def test_each_projects_bill_gives_our_jobs_their_actual_cost(ctx):
    result = BillingSync().cycle(ctx)
    assert (result.projects, result.charges) == (["P1", "P2"], 2)
    costs = ctx.store.actual_costs()
    assert {job: (c.charge, c.compute) for job, c in costs.items()} == {
        "R-a": (Decimal("1.75"), Decimal("1.50")), "R-b": (Decimal("0.70"), Decimal("0.70"))}
    assert ("project_billing_csv", ("acme", "04-0468913198", "P1")) in ctx.client.calls
    assert ctx.store.billing_summary("2024-04").summary == {"totalCharge": 12.5, "jobs": 3}


def test_a_project_whose_bill_fails_does_not_stop_the_others(ctx):
    ran(ctx, "c", "P3")
    answers = {"P1": ServerError("Rescale answered 500", status=500),
               "P2": CSV["P2"].replace("$0.70", "$0,7"), "P3": bill(row("R-c", "Compute", "$0.30"))}
    ctx.client.answers["project_billing_csv"] = lambda org, ws, project: _answer(answers[project])
    result = BillingSync().cycle(ctx)
    assert (result.projects, result.failed) == (["P3"], ["P1", "P2"])
    assert set(ctx.store.actual_costs()) == {"R-c"}
    assert ctx.log.events("warning") == ["cannot read the project's billing CSV"] * 2


def test_a_total_row_that_is_not_the_sum_of_the_line_items_is_logged(ctx):
    ctx.client.answers["project_billing_csv"] = lambda o, w, p: CSV[p].replace("$1.75,", "$2.75,")
    BillingSync().cycle(ctx)
    assert ctx.log.events("warning") == [
        "the project's billing CSV: its Total row differs from its line items"]


def _answer(value):
    if isinstance(value, Exception):
        raise value
    return value


def test_no_billing_access_is_said_once_and_not_asked_again_until_the_next_day(ctx):
    ctx.client.answers["project_billing_csv"] = AuthenticationError("Rescale answered 403", status=403)
    sync = BillingSync()
    assert sync.cycle(ctx).skipped == "no billing access"
    calls = len(ctx.client.calls)
    ctx.clock.now += 3600
    assert sync.cycle(ctx).skipped == "no billing access"
    assert len(ctx.client.calls) == calls
    assert [e for e in ctx.log.events("warning") if "billing" in e] == [
        "no billing access: actual cost is not reconciled until tomorrow (UTC) or an agent restart"]
    ctx.clock.now = APR_10 + 86400
    ctx.client.answers["project_billing_csv"] = lambda org, ws, project: CSV[project]
    assert sync.cycle(ctx).projects == ["P1", "P2"]


def test_without_organization_and_workspace_it_says_so_once_and_asks_nothing(tmp_path):
    with stage_context(tmp_path, FakeClient(), {"agent": {"organization": "acme"}}) as ctx:
        sync = BillingSync()
        sync.cycle(ctx)
        assert sync.cycle(ctx).skipped == "agent.organization and agent.workspace are not both set"
        assert ctx.client.calls == []
        assert ctx.log.events("info") == ["billing reconciliation is off: it needs agent.organization and"
                                          " agent.workspace"]


def test_the_agents_cycle_logs_an_unexpected_failure_instead_of_raising(ctx):
    ctx.client.answers["project_billing_csv"] = RuntimeError("a bug")
    run_cycle(BillingSync(), ctx)
    assert ctx.log.events("error") == ["billing reconciliation failed"]
