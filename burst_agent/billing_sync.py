"""Billing reconciliation: Rescale's project billing CSVs -> each job's actual cost in the store.

One cycle (the agent runs it every spending.billing_reconcile_interval_s): for each Rescale project of
the runs that ended this month or the last, or still run, read the project's billing CSV and store what
it billed each of our jobs per month; then keep this month's workspace billing summary. A project whose
CSV fails (an HTTP error, a malformed CSV) is logged and the others go on. A 401/403 means this token
may not read the bill: said once, and no billing call is made again until the next UTC day (or a
restart). Jobs without a project are not in any project CSV (see docs/accounting.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from burst_agent.billing import (
    BillingFormatError,
    charges_by_job,
    month_of,
    next_day,
    parse_project_csv,
    projects_to_fetch,
)
from burst_agent.rescale.errors import AuthenticationError, RescaleError

if TYPE_CHECKING:
    from burst_agent.pipeline.context import Context

TOTAL_TOLERANCE = Decimal("0.01")  # the Total row may differ from the line items' sum by rounding


@dataclass
class SyncResult:
    """What one cycle did."""

    projects: list[str] = field(default_factory=list)  # whose CSV was read and stored
    failed: list[str] = field(default_factory=list)  # whose CSV could not be read
    charges: int = 0  # (job, month) figures stored
    skipped: str | None = None  # why nothing was asked of Rescale


@dataclass
class BillingSync:
    """The reconciliation step and what it remembers between cycles (in memory: a restart forgets)."""

    denied_until: float | None = None  # no billing access: no billing call before this (Unix time)
    _said: set[str] = field(default_factory=set)

    def cycle(self, ctx: Context) -> SyncResult:
        """One reconciliation; never raises for Rescale's or the CSV's sake (logged instead)."""
        agent, now = ctx.config.agent, ctx.clock()
        if not (agent.organization and agent.workspace):
            self._once(ctx, "setup", "billing reconciliation is off: it needs agent.organization and"
                                     " agent.workspace", level="info")
            return SyncResult(skipped="agent.organization and agent.workspace are not both set")
        if self.denied_until is not None and now < self.denied_until:
            return SyncResult(skipped="no billing access")
        self.denied_until = None
        self._said.discard("denied")
        jobs = ctx.store.jobs(with_remote_id=True)
        ours = {job.remote_job_id for job in jobs}
        result = SyncResult()
        try:
            for project in projects_to_fetch(jobs, now):
                self._project(ctx, project, ours, result)
            self._summary(ctx, now)
        except AuthenticationError as exc:
            self.denied_until = next_day(now)
            self._once(ctx, "denied", "no billing access: actual cost is not reconciled until tomorrow"
                                      " (UTC) or an agent restart", error=str(exc))
            result.skipped = "no billing access"
        if result.projects or result.failed:
            ctx.log.info("billing reconciled", projects=len(result.projects), failed=len(result.failed),
                         charges=result.charges)
        return result

    def _project(self, ctx: Context, project: str, ours: set[str | None], result: SyncResult) -> None:
        agent = ctx.config.agent
        try:
            bill = parse_project_csv(ctx.client.project_billing_csv(agent.organization, agent.workspace,
                                                                    project))
        except AuthenticationError:
            raise
        except (RescaleError, BillingFormatError) as exc:
            result.failed.append(project)
            ctx.log.warning("cannot read the project's billing CSV", project=project, error=str(exc))
            return
        if bill.stated_total is not None and abs(bill.stated_total - bill.total) > TOTAL_TOLERANCE:
            ctx.log.warning("the project's billing CSV: its Total row differs from its line items",
                            project=project, total_row=str(bill.stated_total), line_items=str(bill.total))
        result.charges += ctx.store.record_charges(charges_by_job(bill, {i for i in ours if i}))
        result.projects.append(project)

    def _summary(self, ctx: Context, now: float) -> None:
        agent, month = ctx.config.agent, month_of(now)
        year_month = (int(month[:4]), int(month[5:]))
        try:
            summary = ctx.client.workspace_billing(agent.organization, agent.workspace, start=year_month,
                                                   end=year_month)
        except AuthenticationError:
            raise
        except RescaleError as exc:
            ctx.log.warning("cannot read the workspace billing summary", month=month, error=str(exc))
            return
        ctx.store.record_billing_summary(month, summary)

    def _once(self, ctx: Context, key: str, message: str, *, level: str = "warning", **fields: Any) -> None:
        if key not in self._said:
            self._said.add(key)
            getattr(ctx.log, level)(message, **fields)


def run_cycle(sync: BillingSync, ctx: Context) -> None:
    """The agent's scheduler job: a cycle whose unexpected failure is logged, never raised."""
    try:
        sync.cycle(ctx)
    except Exception as exc:  # the store unreachable, a bug: the next cycle tries again
        ctx.log.error("billing reconciliation failed", error=str(exc), exc_info=True)
