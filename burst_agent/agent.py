"""The daemon: intake loop, worker threads, periodic watch and log tail, restart recovery, signals."""

from __future__ import annotations

import itertools
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from burst_agent.billing_sync import BillingSync, run_cycle
from burst_agent.config import Config
from burst_agent.lifecycle import REMOTE_ACTIVE, JobState
from burst_agent.metrics import serve
from burst_agent.pipeline.advance import ACTIONABLE, advance
from burst_agent.pipeline.cancel import end_if_gone
from burst_agent.pipeline.collect import StageOutIncomplete
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.dispatch import Pacer
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.pipeline.intake import intake, unrecorded_claims
from burst_agent.pipeline.logtail import LogTailer, tail_budget_per_hour
from burst_agent.pipeline.orphans import OrphanCheck
from burst_agent.pipeline.pacing import SPENDING_OF_CLASS, START, work_class
from burst_agent.pipeline.prune import prune_spool
from burst_agent.pipeline.spendcap import parked
from burst_agent.pipeline.watch import poll
from burst_agent.record import JobRecord
from burst_agent.relayserver import RelayServer
from burst_agent.relaytcp import start_tcp
from burst_agent.rescale.errors import NotFoundError, RateLimitedError, RescaleError
from burst_agent.rescale.ratelimit import BudgetExhausted, spending
from burst_agent.sdnotify import Notifier
from burst_agent.spool import SpoolWatcher

BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0
RETRY_AFTER_MAX_S = 3600.0  # a Retry-After of days (a hostile or broken server) must not park a job
STOP_WAIT_S = 10.0
# Step failures whose message says it all (logged without a traceback).
EXPECTED: tuple[type[Exception], ...] = (RescaleError, StageOutIncomplete)
ORPHAN_CHECK_S = 30.0
# Started again this soon after a crash: the rate budgets start empty (no fresh burst per restart).
RESTART_WINDOW_S = 60.0
PRUNE_INTERVAL_S = 3600.0
CATALOGUE_CHECK_S = 600.0  # the catalogue (and its copy for size-charges) is refetched hourly
# Claimed entries nobody recorded (a deposed leader's last claim, a store error mid-intake): recorded
# again this often, not only at start.
RECLAIM_S = 30.0
LAST_START_KEY = "last_start"
CLEAN_STOP_KEY = "stopped_cleanly"


@dataclass
class Backoff:
    """Per-job retry schedule after a failed step (in memory: a restart retries at once)."""

    clock: Callable[[], float] = time.monotonic
    _due: dict[str, tuple[int, float]] = field(default_factory=dict)

    def due(self, job_id: str) -> bool:
        return self._due.get(job_id, (0, 0.0))[1] <= self.clock()

    def failed(self, job_id: str, wait: float | None = None) -> float:
        """Schedule the next try: `wait` (a 429's Retry-After) as asked, without raising the exponent a
        later real failure backs off by; else the doubling backoff."""
        attempts = self._due.get(job_id, (0, 0.0))[0] + (wait is None)
        delay = min(wait, RETRY_AFTER_MAX_S) if wait is not None else \
            min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempts - 1))
        delay *= random.uniform(1.0, 1.25)  # spread retries of many jobs hit by one outage
        self._due[job_id] = (attempts, self.clock() + delay)
        return delay

    def succeeded(self, job_id: str) -> None:
        self._due.pop(job_id, None)


class InFlight:
    """Job ids some thread is working on; nobody else touches those jobs meanwhile."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def try_add(self, job_id: str) -> bool:
        with self._lock:
            if job_id in self._ids:
                return False
            self._ids.add(job_id)
            return True

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._ids.discard(job_id)

    def has(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)


class Agent:
    """Owns the threads; every durable fact lives in ctx.store, so a killed agent loses nothing."""

    def __init__(
        self,
        ctx: Context,
        *,
        on_ready: Callable[[], None] | None = None,
        reload_config: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.ctx = ctx
        self.notifier = notifier or Notifier()
        self._reload_config = reload_config
        self._reload_requested = threading.Event()
        self.heartbeats: dict[str, float] = {}
        self.metrics_server: Any = None
        self.relay_server = RelayServer(ctx)
        self.orphans = OrphanCheck(self.relay_server.last_seen)
        self.stopping = threading.Event()
        self.inflight = InFlight()
        self.backoff = Backoff()
        self.pacer = Pacer(ctx.client.budgets)
        ctx.metrics.watch_budget_waiting(lambda: self.pacer.waiting)
        self.tailer = LogTailer(lambda executing: tail_budget_per_hour(self.ctx.config, executing))
        self.last_poll_ok: float | None = None
        self._queue: queue.PriorityQueue[tuple[int, int, str]] = queue.PriorityQueue()
        self._queued = itertools.count()
        self._dispatching = threading.Lock()  # intake, poll and orphan loops all dispatch
        self._on_ready = on_ready
        self._scheduler = BackgroundScheduler(
            daemon=True, job_defaults={"coalesce": True, "max_instances": 1}
        )

    # -- work -----------------------------------------------------------------------------------

    def _work(self, job_id: str, work: int = START) -> None:
        log = self.ctx.log.bind(job=job_id)
        try:
            job = self.ctx.store.get(job_id)
            if job is not None and not job.terminal:
                with spending(SPENDING_OF_CLASS[work]):
                    advance(self.ctx, job, stopping=self.stopping.is_set, may_step=self.pacer.may_step)
            self.backoff.succeeded(job_id)
        except BudgetExhausted as exc:  # mid-step: the job waits for its scope in the dispatcher's queue
            self.pacer.deferred(job_id, exc.scope)
            log.debug("budget spent mid-step; the job waits for its turn", scope=exc.scope,
                      wait_s=round(exc.wait_s, 1))
        except PermanentJobError as exc:
            self._fail(job_id, str(exc), exc.stage)
        except RateLimitedError as exc:
            log.warning("rate limited", retry_in_s=round(self.backoff.failed(job_id, exc.retry_after), 1))
        except Exception as exc:
            try:  # a step's 404: the remote job may be gone (deleted on Rescale); then the job ends
                if isinstance(exc, NotFoundError) and end_if_gone(self.ctx, job_id):
                    self.backoff.succeeded(job_id)
                    return
            except Exception as check:
                exc = check
            delay = self.backoff.failed(job_id)
            # A Rescale answer names method, path and status: a traceback only for the unexpected.
            log.warning("step failed; will retry", error=str(exc), error_type=type(exc).__name__,
                        retry_in_s=round(delay, 1), exc_info=not isinstance(exc, EXPECTED))
        finally:
            self.pacer.done(job_id)
            self.inflight.discard(job_id)

    def _fail(self, job_id: str, reason: str, stage: str) -> None:
        job = self.ctx.store.get(job_id)
        if job is None or job.terminal:
            return
        job = self.ctx.finish(job, JobState.FAILED, reason, reason_class=stage, failure_reason=reason,
                              quarantine=True)
        self.ctx.job_log(job).warning("job failed", reason=reason)

    def _worker(self) -> None:
        while not self.stopping.is_set():
            try:
                work, _seq, job_id = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._work(job_id, work)

    def _parked(self, job: JobRecord) -> bool:
        """A held job that cannot go now (its account's budget is spent, or protected mode's next probe
        is not due): it takes no turn and does not count as staged ahead of the submission budget."""
        if job.state is not JobState.HELD or job.cancel_requested_at is not None:
            return False
        return parked(self.ctx, job) or not self.ctx.protection.probe_due(self.ctx.clock())

    def dispatch(self) -> int:
        """Queue the jobs that have agent work to do now and whose rate-budget scope allows it (see
        pipeline/pacing.py); the others wait for the next tick, and are told so once."""
        store = self.ctx.store
        jobs = {job.id: job for job in store.jobs(ACTIONABLE) if not self._parked(job)}
        jobs.update({job.id: job for job in store.cancel_pending()})
        with self._dispatching:
            plan = self.pacer.plan(jobs.values(), lambda job: self.backoff.due(job.id)
                                   and not self.inflight.has(job.id))
            queued = 0
            for work in plan.go:
                if self.inflight.try_add(work.job_id):
                    self.pacer.admitted(work)
                    self.pacer.went_on(self.ctx, work)
                    self._queue.put((work_class(work), next(self._queued), work.job_id))
                    queued += 1
        try:
            self.pacer.tell_waiting(self.ctx, plan)
        except Exception as exc:  # a note to the user must never stop the dispatch
            self.ctx.log.warning("cannot tell jobs that they wait for budget", error=str(exc))
        return queued

    # -- periodic -------------------------------------------------------------------------------

    def poll_cycle(self) -> None:
        self.heartbeats["poll"] = time.monotonic()
        try:
            with spending("poll"):  # one listing for every job: before any job's own requests
                poll(self.ctx, claim=self.inflight)
            self.last_poll_ok = self.ctx.clock()
            self.ctx.metrics.poll_succeeded(self.last_poll_ok)
        except Exception as exc:
            self.ctx.log.warning("poll failed", error=str(exc), error_type=type(exc).__name__)
        self.dispatch()
        counts = self.ctx.store.counts_by_state()
        active = sum(n for state, n in counts.items() if state in REMOTE_ACTIVE)
        backlog = len(self.ctx.spool.list_incoming())
        self.notifier.status(f"{active} jobs active on Rescale, {backlog} waiting in the spool")

    def tail_cycle(self) -> None:
        with spending("tail"):  # last: above its floor of the jobs-usage scope, never sleeping for it
            self.tailer.cycle(self.ctx, claim=self.inflight)

    def orphan_cycle(self) -> None:
        try:
            if self.orphans.cycle(self.ctx):
                self.dispatch()
        except Exception as exc:
            self.ctx.log.warning("orphan check failed", error=str(exc))

    def prune_cycle(self) -> None:
        try:
            report = prune_spool(self.ctx.store, self.ctx.spool, self.ctx.config.agent.spool_retention_days,
                                 self.ctx.clock())
        except Exception as exc:  # housekeeping must never take the agent down
            self.ctx.log.error("spool pruning failed", error=str(exc), exc_info=True)
            return
        if report.logs or report.results:
            self.ctx.log.info("pruned expired spool copies of finished relay jobs", logs=report.logs,
                              results=report.results)

    def catalogue_cycle(self) -> None:
        """Fetch the catalogue once it is stale, jobs or not: `burst-agent size-charges` sizes held jobs
        from its copy (cataloguecopy.py) before any of them reaches the agent."""
        try:
            self.ctx.catalogue.get()
        except Exception as exc:  # the next cycle, or the next job's intake, tries again
            self.ctx.log.warning("catalogue fetch failed", error=str(exc))

    def healthy(self) -> bool:
        """The intake loop and the poll loop both ran recently (they may fail; they must not hang)."""
        now, cfg = time.monotonic(), self.ctx.config.agent
        limits = {"intake": cfg.intake_interval_s * 3 + 30, "poll": cfg.poll_interval_s * 3 + 60}
        return all(now - self.heartbeats.get(loop, now) < limit for loop, limit in limits.items())

    def watchdog_cycle(self) -> None:
        if self.healthy():
            self.notifier.watchdog()
        else:
            self.ctx.log.error("a main loop is stuck: no watchdog ping", heartbeats=self.heartbeats)

    def reload(self) -> None:
        """SIGHUP: re-read the config; keep the old one if the new one is invalid."""
        if self._reload_config is None:
            return
        self.notifier.reloading()
        try:
            new = self._reload_config()
        except Exception as exc:
            self.ctx.log.error("config reload failed; keeping the running config", error=str(exc))
        else:
            if new.api != self.ctx.config.api or new.agent.spool_dir != self.ctx.config.agent.spool_dir \
                    or new.agent.state_db != self.ctx.config.agent.state_db:
                self.ctx.log.warning("api, spool_dir and state_db changes take effect after a restart")
            self.ctx.config = new
            self._scheduler.reschedule_job("poll", trigger="interval", seconds=new.agent.poll_interval_s)
            self._scheduler.reschedule_job("tail", trigger="interval", seconds=new.agent.log_tail_interval_s)
            self.ctx.log.info("config reloaded")
        self.notifier.ready()

    # -- lifecycle ------------------------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Count what a restart resumes; the loops pick every non-terminal job up from its state."""
        counts = {state.value: n for state, n in self.ctx.store.counts_by_state().items() if n}
        self.ctx.log.info("state recovered", **counts)
        self._pace_quick_restart()
        return counts

    def _pace_quick_restart(self) -> None:
        """No fresh burst of API calls for an agent that died and was started again within a burst
        window: a crash loop under systemd's Restart= would otherwise spend a minute of Rescale's budget
        every few seconds. A clean stop (SIGTERM, as `systemctl restart` sends) keeps the burst."""
        now = self.ctx.clock()
        previous = self.ctx.store.swap_meta(LAST_START_KEY, repr(now))
        stopped_cleanly = self.ctx.store.swap_meta(CLEAN_STOP_KEY, "no") == "yes"
        try:
            since = now - float(previous) if previous else None
        except ValueError:  # an unreadable record counts as a first start
            since = None
        if not stopped_cleanly and since is not None and 0 <= since < RESTART_WINDOW_S:
            self.ctx.client.budgets.drain()
            self.ctx.log.warning("restarted soon after a crash: API budgets start empty",
                                 seconds_since_previous_start=round(since, 1))

    def run(self) -> None:
        """Serve until stop(): intake on arrival (inotify) or every intake interval, watch, tail."""
        cfg = self.ctx.config.agent
        self.ctx.spool.ensure()
        self.recover()
        for n in range(cfg.workers):
            threading.Thread(target=self._worker, name=f"worker-{n}", daemon=True).start()
        self._scheduler.add_job(self.poll_cycle, "interval", seconds=cfg.poll_interval_s, id="poll",
                                next_run_time=datetime.now(UTC))
        self._scheduler.add_job(self.tail_cycle, "interval", seconds=cfg.log_tail_interval_s, id="tail")
        self._scheduler.add_job(self.orphan_cycle, "interval", seconds=ORPHAN_CHECK_S, id="orphans")
        self._scheduler.add_job(self.prune_cycle, "interval", seconds=PRUNE_INTERVAL_S, id="prune")
        self._scheduler.add_job(self.catalogue_cycle, "interval", seconds=CATALOGUE_CHECK_S, id="catalogue",
                                next_run_time=datetime.now(UTC))
        if self.ctx.config.spending.billing_reconcile_interval_s:  # actual cost from Rescale's bill
            self._scheduler.add_job(run_cycle, "interval", args=(BillingSync(), self.ctx), id="billing",
                                    seconds=self.ctx.config.spending.billing_reconcile_interval_s)
        interval = self.notifier.watchdog_interval()
        if interval:
            self._scheduler.add_job(self.watchdog_cycle, "interval", seconds=interval / 2, id="watchdog")
        self._scheduler.start()
        metrics_cfg = self.ctx.config.metrics
        if metrics_cfg.enabled:
            self.metrics_server = serve(self.ctx.metrics, metrics_cfg.listen_host, metrics_cfg.listen_port)
            self.ctx.log.info("metrics endpoint up", host=metrics_cfg.listen_host,
                              port=self.metrics_server.port)
        self.relay_server.start()
        self.relay_tcp = start_tcp(self.relay_server)  # relays on other nodes: agent.relay_tcp_listen
        self.notifier.ready("state recovered; serving")
        if self._on_ready:
            self._on_ready()
        recovered = unrecorded_claims(self.ctx)
        reclaim_at = time.monotonic() + RECLAIM_S
        with SpoolWatcher(self.ctx.spool, poll_interval=cfg.intake_interval_s) as watcher:
            self.ctx.log.info("agent running", spool=str(self.ctx.spool.root), watcher=watcher.mode)
            while not self.stopping.is_set():
                self.heartbeats["intake"] = time.monotonic()
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self.reload()
                try:
                    if time.monotonic() >= reclaim_at:  # this thread alone claims: none is its own
                        recovered, reclaim_at = unrecorded_claims(self.ctx), time.monotonic() + RECLAIM_S
                    intake(self.ctx, recovered)
                    recovered = []
                except Exception as exc:
                    self.ctx.log.error("intake failed", error=str(exc), exc_info=True)
                self.dispatch()
                # Sooner if work waits for tokens due before the next tick (no worker sleeps for them).
                watcher.wait(max(0.05, min(cfg.intake_interval_s, self.pacer.next_due_s)))
        self.notifier.stopping("stopping: finishing in-flight steps")
        self._scheduler.shutdown(wait=False)
        # Steps check `stopping` between side effects; a long transfer is abandoned at the deadline
        # (its .partial file resumes after the restart).
        deadline = time.monotonic() + STOP_WAIT_S
        while len(self.inflight) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.relay_tcp is not None:
            self.relay_tcp.stop()
        self.relay_server.stop()
        self.ctx.store.swap_meta(CLEAN_STOP_KEY, "yes")
        self.ctx.log.info("agent stopped", abandoned_in_flight=len(self.inflight))

    def stop(self, *_args: Any) -> None:
        self.stopping.set()

    def request_reload(self, *_args: Any) -> None:
        self._reload_requested.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.request_reload)
