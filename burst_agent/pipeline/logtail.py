"""Live log: append new bytes of a running job's process_output.log to its stdout file, on a schedule."""

from __future__ import annotations

import time
from collections.abc import Callable

from burst_agent.config import AgentConfig, Config
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.cancel import end_vanished, remote_gone
from burst_agent.pipeline.collect import append_log
from burst_agent.pipeline.context import REMOTE_LOG, Context
from burst_agent.pipeline.tailplan import TailPlan, TailPolicy
from burst_agent.pipeline.watch import Claim
from burst_agent.record import JobRecord, plan_of
from burst_agent.rescale.errors import NotFoundError
from burst_agent.rescale.ratelimit import BudgetExhausted

# However few jobs execute, the budget lets this many print at the minimum interval.
FLOOR_PRINTERS = 10


def tail_budget_per_hour(config: Config, executing: int) -> float:
    """Tails an hour: the share of the jobs-usage scope's target rate, and no more than the per-job
    cap times the executing jobs (never below FLOOR_PRINTERS jobs tailed at the minimum interval)."""
    agent, limits = config.agent, config.api.rate_limits
    share = agent.log_tail_budget_share * limits.jobs_usage_per_hour * limits.target_fraction
    per_jobs = 60.0 * agent.log_tail_calls_per_job_per_min * executing
    floor = FLOOR_PRINTERS * 3600.0 / agent.log_tail_min_interval_s
    return min(share, max(per_jobs, floor))


def policy_of(agent: AgentConfig, per_hour: float) -> TailPolicy:
    return TailPolicy(min_interval_s=agent.log_tail_min_interval_s,
                      max_interval_s=agent.log_tail_max_interval_s,
                      per_hour=per_hour, cycle_s=agent.log_tail_interval_s)


class LogTailer:
    """Tails the executing jobs that are due (TailPlan), within a budget of requests an hour: a number,
    or a callable of the executing jobs' count read each cycle (so a config reload takes effect).
    Remembers each job's run id, so a tail costs one request after the first."""

    def __init__(self, budget_per_hour: float | Callable[[int], float], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._budget = budget_per_hour if callable(budget_per_hour) else \
            lambda _executing: float(budget_per_hour)
        self._clock = clock
        self._plan: TailPlan | None = None
        self._runs: dict[str, str] = {}
        self._calls = 0  # requests made by the tail under way (counted even if it raises)

    def _run_id(self, ctx: Context, job: JobRecord) -> str | None:
        assert job.remote_job_id is not None  # narrowing: running jobs carry a remote id
        if job.id not in self._runs:
            self._calls += 1
            runs = ctx.client.list_runs(job.remote_job_id)
            if not runs:
                return None
            self._runs[job.id] = str(runs[-1]["id"])
        return self._runs[job.id]

    def tail(self, ctx: Context, job: JobRecord) -> bool:
        """Append what the remote log has past the job's offset; True if it had anything new."""
        try:
            run_id = self._run_id(ctx, job)
        except NotFoundError:  # no runs listing: the remote job itself may be gone
            self._calls += 1
            if job.remote_job_id and remote_gone(ctx, job.remote_job_id):
                end_vanished(ctx, job)
                return False
            raise
        if run_id is None or job.remote_job_id is None:
            return False
        try:
            offset = job.progress.log_offset
            self._calls += 1
            data = ctx.client.read_run_file(job.remote_job_id, run_id, REMOTE_LOG, offset=offset)
        except NotFoundError:  # not started yet, or just finished: collect appends the rest
            return False
        if not data:
            return False
        append_log(plan_of(job).stdout_path, data)
        ctx.store.record_progress(job.id, log_offset=offset + len(data))
        return True

    def cycle(self, ctx: Context, claim: Claim) -> None:
        """Tail the executing jobs that are due, as far as the tail budget goes (tails are jobs-usage
        requests: they share that scope with the poll, which must never starve)."""
        now = self._clock()
        executing = [job_id for job_id, _remote, _state, status in ctx.store.active_remote_brief()
                     if (status or "").lower() == "executing"]
        policy = policy_of(ctx.config.agent, self._budget(len(executing)))
        if self._plan is None:
            self._plan = TailPlan(policy, now)
        plan = self._plan
        plan.set_policy(policy)
        plan.sync(executing, now)
        self._runs = {k: v for k, v in self._runs.items() if k in plan.slots}
        for job_id in plan.ranked(now):
            if not plan.has_budget():
                break
            if not claim.try_add(job_id):  # a worker has the job: it stays due for the next cycle
                continue
            self._calls, grew = 0, False
            try:
                job = ctx.store.get(job_id)
                if job is not None and job.state is JobState.RUNNING and job.plan and job.plan.stdout_path:
                    grew = self.tail(ctx, job)
            except BudgetExhausted:  # the scope is down to what other work needs: tails wait, still due
                return
            except Exception as exc:  # a log hiccup must never stop the agent, nor another job's tail
                ctx.log.warning("live log tail failed", job=job_id, error=str(exc),
                                error_type=type(exc).__name__)
            finally:
                claim.discard(job_id)
            plan.tailed(job_id, now, grew=grew, calls=self._calls)
