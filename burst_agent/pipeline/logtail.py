"""Live log: append new bytes of a running job's process_output.log to its stdout file."""

from __future__ import annotations

from burst_agent.lifecycle import JobState
from burst_agent.pipeline.cancel import end_vanished, remote_gone
from burst_agent.pipeline.collect import append_log
from burst_agent.pipeline.context import REMOTE_LOG, Context
from burst_agent.pipeline.watch import Claim
from burst_agent.record import JobRecord, plan_of
from burst_agent.rescale.errors import NotFoundError

TAILS_PER_CYCLE = 50


class LogTailer:
    """Remembers each running job's run id, so a cycle costs one request per executing job."""

    def __init__(self) -> None:
        self._runs: dict[str, str] = {}
        self._turn = 0

    def _run_id(self, ctx: Context, job: JobRecord) -> str | None:
        assert job.remote_job_id is not None  # narrowing: running jobs carry a remote id
        if job.id not in self._runs:
            runs = ctx.client.list_runs(job.remote_job_id)
            if not runs:
                return None
            self._runs[job.id] = str(runs[-1]["id"])
        return self._runs[job.id]

    def tail(self, ctx: Context, job: JobRecord) -> JobRecord:
        try:
            run_id = self._run_id(ctx, job)
        except NotFoundError:  # no runs listing: the remote job itself may be gone
            if job.remote_job_id and remote_gone(ctx, job.remote_job_id):
                return end_vanished(ctx, job)
            raise
        if run_id is None or job.remote_job_id is None:
            return job
        try:
            offset = job.progress.log_offset
            data = ctx.client.read_run_file(job.remote_job_id, run_id, REMOTE_LOG, offset=offset)
        except NotFoundError:  # not started yet, or just finished: collect appends the rest
            return job
        if not data:
            return job
        append_log(plan_of(job).stdout_path, data)
        return ctx.store.record_progress(job.id, log_offset=offset + len(data))

    def cycle(self, ctx: Context, claim: Claim) -> None:
        """Tail executing jobs, at most TAILS_PER_CYCLE of them, taking turns (tails are job reads:
        they share the rate budget with the poll, which must never starve)."""
        executing = [job_id for job_id, _remote, _state, status in ctx.store.active_remote_brief()
                     if (status or "").lower() == "executing"]
        self._runs = {k: v for k, v in self._runs.items() if k in set(executing)}
        start = self._turn % len(executing) if executing else 0
        chosen = (executing[start:] + executing[:start])[:TAILS_PER_CYCLE]
        self._turn = start + len(chosen)
        for job_id in chosen:
            if not claim.try_add(job_id):
                continue
            try:
                job = ctx.store.get(job_id)
                if job is not None and job.state is JobState.RUNNING and job.plan and job.plan.stdout_path:
                    self.tail(ctx, job)
            except Exception as exc:  # a log hiccup must never stop the agent, nor another job's tail
                ctx.log.warning("live log tail failed", job=job_id, error=str(exc),
                                error_type=type(exc).__name__)
            finally:
                claim.discard(job_id)
