"""`burst-agent report`'s figures (pure): jobs, core-hours, estimated and actual cost per account, user,
coretype or project, for the jobs whose remote run ended in a month.

ACTUAL sums what Rescale's bill says of the row's jobs that it has billed so far (billing.py; partial:
"12.30 (3/5)", 3 of the 5 jobs billed), DIFF is that actual minus the estimate of those same jobs.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from burst_agent.billing import ActualCost, BillingSummary
from burst_agent.jobview import cost_so_far
from burst_agent.record import JobRecord, plan_of, plan_or_none

# --by NAME -> the job's group in the report ("-" where the job has none).
GROUPS: dict[str, Callable[[JobRecord], str | None]] = {
    "account": lambda job: job.plan.account if job.plan else None,
    "user": lambda job: job.origin.owner_name or str(job.owner_uid),
    "coretype": lambda job: plan.coretype if (plan := plan_or_none(job)) else None,
    "project": lambda job: job.plan.project if job.plan else None,
}
COLUMNS = ("GROUP", "JOBS", "CORE-HOURS", "ESTIMATED", "ACTUAL", "DIFF")


@dataclass
class Usage:
    """One group's remote runs: how many, core-hours, estimated cost; and of the `billed` ones (those on
    Rescale's bill so far) the actual cost and their estimate."""

    group: str
    jobs: int = 0
    core_hours: Decimal = Decimal(0)
    estimated: Decimal = Decimal(0)
    actual: Decimal | None = None  # None: none of the row's jobs billed yet
    billed: int = 0
    billed_estimate: Decimal = Decimal(0)

    @property
    def diff(self) -> Decimal | None:
        """Actual minus estimate over the billed jobs."""
        return None if self.actual is None else self.actual - self.billed_estimate

    def add_actual(self, charge: Decimal, estimate: Decimal, jobs: int = 1) -> None:
        self.actual = (self.actual or Decimal(0)) + charge
        self.billed += jobs
        self.billed_estimate += estimate


def month_of(at: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(at))


def usage(jobs: Iterable[JobRecord], month: str, by: str,
          actuals: Mapping[str, ActualCost] | None = None) -> list[Usage]:
    """Per group, the jobs whose remote run ended in `month` (YYYY-MM, UTC), largest cost first;
    `actuals` (remote job id -> Rescale's bill of it, store.actual_costs()) fills ACTUAL in."""
    groups: dict[str, Usage] = {}
    actuals = actuals or {}
    for job in jobs:
        start, end = job.remote.started_at, job.remote.finished_at
        if job.plan is None or start is None or end is None or month_of(end) != month:
            continue
        name = GROUPS[by](job) or "-"
        row = groups.setdefault(name, Usage(name))
        row.jobs += 1
        row.core_hours += Decimal(plan_of(job).cores) * Decimal(max(0.0, end - start)) / 3600
        estimate = cost_so_far(job, end) or Decimal(0)
        row.estimated += estimate
        actual = actuals.get(job.remote_job_id or "")
        if actual is not None:
            row.add_actual(actual.charge, estimate)
    return sorted(groups.values(), key=lambda row: (-row.estimated, row.group))


def _money(value: Decimal | None, sign: str = "") -> str | None:
    return None if value is None else f"{value:{sign}.2f}"


def cells(row: Usage) -> tuple[str, ...]:
    """The table's cells: ACTUAL "-" (none billed), "12.30", or "12.30 (3/5)" (3 of 5 jobs billed)."""
    actual = _money(row.actual) or "-"
    if row.actual is not None and row.billed < row.jobs:
        actual += f" ({row.billed}/{row.jobs})"
    return (row.group, str(row.jobs), f"{row.core_hours:.2f}", f"{row.estimated:.2f}", actual,
            _money(row.diff, "+") or "-")


def total(rows: list[Usage]) -> Usage:
    summed = Usage("TOTAL", sum(r.jobs for r in rows), sum((r.core_hours for r in rows), Decimal(0)),
                   sum((r.estimated for r in rows), Decimal(0)))
    for row in rows:
        if row.actual is not None:
            summed.add_actual(row.actual, row.billed_estimate, row.billed)
    return summed


CSV_COLUMNS = ("jobs", "core_hours", "estimated_cost", "actual_cost", "billed_jobs", "actual_minus_estimate")


def as_csv(rows: list[Usage], by: str) -> str:
    """The rows as CSV, the group column named after `by`; actual and difference empty where none billed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((by, *CSV_COLUMNS))
    writer.writerows((*cells(row)[:4], _money(row.actual) or "", row.billed, _money(row.diff) or "")
                     for row in rows)
    return out.getvalue()


# The workspace billing summary's fields the report shows: (key, label, money?).
SUMMARY_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("jobs", "jobs", False), ("hardwareCharge", "hardware", True), ("softwareCharge", "software", True),
    ("storageCharge", "storage", True), ("totalCharge", "total", True),
)


def _figure(value: object, money: bool) -> str:
    if money and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return f"{Decimal(str(value)):.2f}"
        except ArithmeticError:
            pass
    return str(value)


def summary_line(summary: BillingSummary) -> str:
    """Rescale's totals for the whole workspace in the month: every job of the workspace, the agent's
    or not, with or without a project (the summary has no line items to tell them apart)."""
    data = summary.summary
    figures = ", ".join(f"{label} {_figure(data[key], money)}" for key, label, money in SUMMARY_FIELDS
                        if key in data)
    at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(summary.fetched_at))
    return (f"Rescale's bill of the whole workspace for {summary.month} (every job in it, from this agent or "
            f"not), as of {at}: {figures or 'no figures'}")
