"""Monthly spend per account: what counts, the hold with its message, refusal, the dispatcher's parking."""

from __future__ import annotations

from dataclasses import replace

import pytest
from jobkit import S, make_job, plan
from stagekit import Clock, stage_context

from burst_agent.pipeline.advance import advance
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.pipeline.spendcap import held_for_spend, next_month, parked, spend_by_account
from burst_agent.record import Remote

DEC_10 = 1_765_324_800.0  # 2025-12-10T00:00:00Z
HOUR = 3600.0


def ran(store, entry, account, start, end=None):
    """A remote run of 4 cores at 0.10/core-hour (0.40 an hour) from `start` (to `end`, or still going)."""
    job = make_job(store, entry, S.RUNNING, job_plan=plan(account=account))
    return store.record_remote(job.id, Remote(status="Executing", started_at=start, finished_at=end))


@pytest.fixture
def ctx(tmp_path):
    config = {"spending": {"monthly_by_account": {"physics": 1.0}}}
    with stage_context(tmp_path, config=config, clock=Clock(DEC_10)) as ctx:
        yield ctx


def test_runs_ended_this_month_and_runs_going_count_earlier_months_do_not(ctx):
    ran(ctx.store, "a", "physics", DEC_10 - 2 * HOUR, DEC_10 - HOUR)  # 0.40
    ran(ctx.store, "b", "physics", DEC_10 - HOUR)  # still going: 0.40 so far
    ran(ctx.store, "c", "physics", DEC_10 - 40 * 86400, DEC_10 - 39 * 86400)  # October
    ran(ctx.store, "d", "chemistry", DEC_10 - HOUR)
    assert {k: float(v) for k, v in spend_by_account(ctx.store.jobs(), DEC_10).items()} == {
        "physics": 0.8, "chemistry": 0.4}


def test_a_job_of_a_spent_account_is_held_with_why_and_until_when_and_goes_when_the_budget_is_raised(ctx):
    ran(ctx.store, "a", "physics", DEC_10 - 3 * HOUR)  # 1.20 of 1.00
    job = make_job(ctx.store, "new", S.STAGED, job_plan=plan(account="physics", stdout_path=None))
    job = advance(ctx, job)
    assert job.state is S.HELD and parked(ctx, job)
    assert job.result.reason == ("account physics has spent an estimated 1.20 of its 1.00 budget for 2025-12"
                                 " (running jobs included): held until 2026-01-01 00:00 UTC, or until"
                                 " spending.monthly_by_account.physics is raised")
    raised = replace(ctx.config.spending, monthly_by_account={"physics": 100})
    ctx.config = replace(ctx.config, spending=raised)
    assert not parked(ctx, job) and held_for_spend(ctx, job) is None


def test_refuse_fails_the_job_and_other_accounts_are_untouched(tmp_path):
    config = {"spending": {"monthly_by_account": {"physics": 0.0}, "when_exhausted": "refuse"}}
    with stage_context(tmp_path, config=config, clock=Clock(DEC_10)) as ctx:
        with pytest.raises(PermanentJobError, match="refused"):
            held_for_spend(ctx, make_job(ctx.store, "p", S.STAGED, job_plan=plan(account="physics")))
        assert held_for_spend(ctx, make_job(ctx.store, "c", S.STAGED, job_plan=plan(account="chem"))) is None


def test_next_month_rolls_the_year():
    assert next_month(1_767_139_200.0) == 1_767_225_600.0  # 2025-12-31 -> 2026-01-01
