"""Monthly cloud spend per scheduler account: a pure rule and a thin gate before each create.

An account's spend in a calendar month (UTC) is the estimated cost of its remote runs that ended in
the month plus the cost so far of those still running (price per core-hour x cores x hours, as
everywhere). A new job of an account at or over its `spending.monthly_by_account` budget is held
before its create until the month ends or the budget is raised ("hold"), or fails with the reason
("refuse"). A job already created is never stopped for it. The spend is read from the store (so it
survives restarts), at most every SPEND_TTL_S.
"""

from __future__ import annotations

import calendar
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from burst_agent.config import SpendingConfig
from burst_agent.jobview import cost_so_far
from burst_agent.ledger import JobLedger
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.pipeline.hold import hold
from burst_agent.record import JobRecord
from burst_agent.report import month_of

SPEND_TTL_S = 10.0

# -- pure ---------------------------------------------------------------------------------------------


def next_month(now: float) -> float:
    """The Unix time the month after `now`'s begins (UTC)."""
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def spend_by_account(jobs: Iterable[JobRecord], now: float) -> dict[str, Decimal]:
    """Estimated spend of each account in `now`'s month: runs ended in it, and runs still going."""
    month, spent = month_of(now), {}
    for job in jobs:
        end = job.remote.finished_at
        if job.plan is None or job.plan.account is None or (end is not None and month_of(end) != month):
            continue
        cost = cost_so_far(job, now)
        if cost is not None:
            spent[job.plan.account] = spent.get(job.plan.account, Decimal(0)) + cost
    return spent


@dataclass(frozen=True)
class Standing:
    """An account's spend this month against its budget."""

    account: str
    spent: Decimal
    budget: Decimal

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget


def standings(spent: dict[str, Decimal], config: SpendingConfig) -> list[Standing]:
    """Every account with a budget, in config order."""
    return [Standing(account, spent.get(account, Decimal(0)), Decimal(str(budget)))
            for account, budget in config.monthly_by_account.items()]


def exhausted_reason(standing: Standing, now: float, refused: bool) -> str:
    spent = (f"account {standing.account} has spent an estimated {standing.spent:.2f} of its"
             f" {standing.budget:.2f} budget for {month_of(now)} (running jobs included)")
    if refused:
        return f"{spent}: refused (spending.when_exhausted)"
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(next_month(now)))
    return f"{spent}: held until {until}, or until spending.monthly_by_account.{standing.account} is raised"


# -- the gate ----------------------------------------------------------------------------------------

_SPEND: weakref.WeakKeyDictionary[JobLedger, tuple[float, dict[str, Decimal]]] = weakref.WeakKeyDictionary()


def spend_now(ctx: Context) -> dict[str, Decimal]:
    """spend_by_account from the store, read again when older than SPEND_TTL_S."""
    now = ctx.clock()
    cached = _SPEND.get(ctx.store)
    if cached is None or now - cached[0] > SPEND_TTL_S:
        cached = _SPEND[ctx.store] = (now, spend_by_account(ctx.store.jobs(with_remote_id=True), now))
    return cached[1]


def account_standings(ctx: Context) -> list[Standing]:
    """For the metrics gauges: every budgeted account's spend this month."""
    config = ctx.config.spending
    return standings(spend_now(ctx), config) if config.monthly_by_account else []


def held_for_spend(ctx: Context, job: JobRecord) -> JobRecord | None:
    """The job held (or refused) because its account's budget is spent; None: it may go on."""
    config = ctx.config.spending
    account = job.plan.account if job.plan else None
    if account is None or account not in config.monthly_by_account:
        return None
    standing = next(s for s in standings(spend_now(ctx), config) if s.account == account)
    if not standing.exhausted:
        return None
    reason = exhausted_reason(standing, ctx.clock(), config.when_exhausted == "refuse")
    if config.when_exhausted == "refuse":
        raise PermanentJobError(reason, stage="create")
    return hold(ctx, job, reason, "account budget spent", account=account, spent=str(standing.spent),
                budget=str(standing.budget))


def parked(ctx: Context, job: JobRecord) -> bool:
    """A job held for its account's spent budget, which is still spent: the dispatcher leaves it be
    (it neither takes a turn nor counts among the jobs staged ahead of the submission budget)."""
    account = job.plan.account if job.plan else None
    budget = ctx.config.spending.monthly_by_account.get(account) if account else None
    if budget is None or job.state is not JobState.HELD or job.cancel_requested_at is not None:
        return False
    return spend_now(ctx).get(account, Decimal(0)) >= Decimal(str(budget))


def spending_gauges(ctx: Context) -> list[tuple[str, float, float, float]]:
    """(account, spent, budget, warn fraction) of every budgeted account, for the metrics."""
    warn = ctx.config.spending.warn_fraction
    return [(s.account, float(s.spent), float(s.budget), warn) for s in account_standings(ctx)]
