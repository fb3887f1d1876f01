"""Prometheus metrics: a private registry, the events the pipeline reports, scrape-time collectors."""

from __future__ import annotations

import logging
import platform
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from burst_agent import __version__
from burst_agent.lifecycle import JobState
from burst_agent.record import plan_or_none
from burst_agent.rescale.ratelimit import SCOPES, BudgetState
from burst_agent.store import StoreError, job_counts_reader

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from burst_agent.record import JobRecord, StateChange
    from burst_agent.rescale.client import RequestEvent

log = logging.getLogger(__name__)

PREFIX = "burst_agent"
DIRECTIONS = ("upload", "download")
FINISHED_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

# Why a job failed, as a small fixed set (bounded label values). "cancelled" is a remote stop we did
# not ask for; a stop we asked for ends CANCELLED and is not a failure.
FAILURE_CLASSES = (
    "translate", "stage_in", "create", "submit", "remote", "stage_out", "exit_code", "cancelled", "other",
)
_FAILURE_ALIASES: dict[str, str] = {
    "translation": "translate", "parse": "translate", "spool": "translate",
    "staging_in": "stage_in", "stagein": "stage_in", "upload": "stage_in", "inputs": "stage_in",
    "tag": "create", "tags": "create", "project": "create",
    "poll": "remote", "cluster": "remote", "walltime": "remote",
    "staging_out": "stage_out", "stageout": "stage_out", "download": "stage_out", "outputs": "stage_out",
    "exit": "exit_code", "nonzero_exit": "exit_code",
    "stopped": "cancelled", "canceled": "cancelled",
}
# The state a job failed from -> the class, when the caller knows nothing better.
_FAILURE_BY_STATE: dict[JobState, str] = {
    JobState.RECEIVED: "translate",
    JobState.TRANSLATED: "stage_in",
    JobState.STAGING_IN: "stage_in",
    JobState.CREATED: "submit",
    JobState.SUBMITTED: "remote",
    JobState.QUEUED: "remote",
    JobState.RUNNING: "remote",
    JobState.STAGING_OUT: "stage_out",
}

# Partition label values allowed by default (config metrics.partitions); anything else is "other".
DEFAULT_PARTITIONS = ("rescale",)

# Histogram buckets (seconds unless named otherwise), chosen for the ranges each measurement spans.
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TRANSFER_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
QUEUE_WAIT_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
REMOTE_RUN_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)

# Per-scope budget series: (BudgetState field, or "waiting" from the dispatcher; family; name; help).
BUDGET_SERIES: tuple[tuple[str, type[GaugeMetricFamily | CounterMetricFamily], str, str], ...] = (
    ("remaining", GaugeMetricFamily, "api_budget_remaining_requests",
     "Requests left in the client-side rate budget (negative while requests wait)."),
    ("capacity", GaugeMetricFamily, "api_budget_capacity_requests",
     "Burst size of the client-side rate budget."),
    ("limit_per_hour", GaugeMetricFamily, "api_budget_limit_per_hour", "Rescale's hard limit of the scope."),
    ("rate_per_hour", GaugeMetricFamily, "api_budget_rate_per_hour",
     "What the agent spends at most (limit x target fraction)."),
    ("spent", CounterMetricFamily, "api_budget_spent_requests",
     "Requests charged to the scope since the agent started."),
    ("waited_s", CounterMetricFamily, "api_budget_wait_seconds",
     "Seconds requests slept in the scope's bucket."),
    ("waiting", GaugeMetricFamily, "api_budget_waiting_jobs",
     "Jobs whose next step waits for budget in the scope."),
)

JobCounts = Callable[[], Iterable[tuple[str, str, str, int]]]


class Budgets(Protocol):
    """What RateBudgets offers for metrics."""

    def state(self, scope: str) -> BudgetState: ...


def failure_class(reason: str | None, failed_from: JobState | str | None = None) -> str:
    """Map a free-form failure reason (or else the state the job failed from) into FAILURE_CLASSES."""
    key = (reason or "").strip().lower().replace("-", "_").replace(" ", "_")
    if key in FAILURE_CLASSES:
        return key
    if key in _FAILURE_ALIASES:
        return _FAILURE_ALIASES[key]
    if failed_from is not None and JobState(failed_from) in _FAILURE_BY_STATE:
        return _FAILURE_BY_STATE[JobState(failed_from)]
    return "other"


class _ScrapeCollector(Collector):
    """Reads the job store, spool and rate budgets when Prometheus scrapes (never calls the API)."""

    def __init__(self, partitions: frozenset[str]) -> None:
        self.job_counts: JobCounts | None = None
        self.spool_backlog: Callable[[], int] | None = None
        self.budgets: Budgets | None = None
        self.budget_waiting: Callable[[], Mapping[str, int]] | None = None
        self.cloud_cores: Callable[[], tuple[int, int | None]] | None = None
        # [(account, spent this month, its budget, the warn fraction)] of spending.monthly_by_account
        self.spending: Callable[[], Iterable[tuple[str, float, float, float]]] | None = None
        self.protected: Callable[[], bool] | None = None
        self.cooling: Callable[[], Mapping[str, float]] | None = None  # {coretype: cool-down ends at}
        # Users can write any partition into a spool entry: only the admin's list becomes label values.
        self.partitions = partitions

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            f"{PREFIX}_jobs", "Job records in the agent's store, by state.",
            labels=["scheduler", "partition", "state"],
        )
        backlog = GaugeMetricFamily(
            f"{PREFIX}_spool_backlog_entries", "Spool entries waiting to be claimed by the agent."
        )
        budget = {field: kind(f"{PREFIX}_{name}", text, labels=["scope"])
                  for field, kind, name, text in BUDGET_SERIES}
        cores_in_use = GaugeMetricFamily(
            f"{PREFIX}_cloud_cores_in_use", "Cores provisioned on Rescale (coresPerSlot x slots) by jobs"
            " from their create attempt until they are final."
        )
        cores_cap = GaugeMetricFamily(
            f"{PREFIX}_cloud_cores_cap", "agent.max_cloud_cores: jobs beyond it wait (absent when unset)."
        )
        spend = {name: GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["account"]) for name, text in (
            ("account_spend_month", "Estimated spend this calendar month (UTC) of an account with a budget:"
             " runs ended this month and runs still going (catalogue currency)."),
            ("account_budget_month", "spending.monthly_by_account: new jobs wait (or are refused) at it."),
            ("account_budget_warn", "The budget x spending.warn_fraction: the nearly-spent alert's line."))}
        # A failing source drops its samples from this scrape instead of failing the whole scrape.
        try:
            if self.job_counts is not None:
                totals: dict[tuple[str, str, str], int] = {}
                for scheduler, partition, state, count in self.job_counts():
                    key = (scheduler, partition if partition in self.partitions else "other", state)
                    totals[key] = totals.get(key, 0) + count
                for labels, count in sorted(totals.items()):
                    jobs.add_metric(list(labels), count)
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("metrics: cannot read job counts: %s", exc)
        try:
            if self.spool_backlog is not None:
                backlog.add_metric([], self.spool_backlog())
        except OSError as exc:
            log.warning("metrics: cannot read spool backlog: %s", exc)
        if self.budgets is not None:
            for scope in SCOPES:
                state = asdict(self.budgets.state(scope))
                for field, family in budget.items():
                    if field in state:
                        family.add_metric([scope], state[field])
        if self.budget_waiting is not None:
            counts = self.budget_waiting()
            for scope in SCOPES:
                budget["waiting"].add_metric([scope], counts.get(scope, 0))
        try:
            if self.cloud_cores is not None:
                used, cap = self.cloud_cores()
                cores_in_use.add_metric([], used)
                if cap is not None:
                    cores_cap.add_metric([], cap)
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("metrics: cannot read cloud cores in use: %s", exc)
        try:
            for account, spent, limit, warn in self.spending() if self.spending is not None else ():
                for family, value in zip(spend.values(), (spent, limit, limit * warn), strict=True):
                    family.add_metric([account], value)
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("metrics: cannot read account spending: %s", exc)
        protected = GaugeMetricFamily(f"{PREFIX}_protected_mode", "1 while every create or submit fails and"
                                      " new jobs wait (protected mode), else 0.")
        if self.protected is not None:
            protected.add_metric([], 1.0 if self.protected() else 0.0)
        cooling = GaugeMetricFamily(f"{PREFIX}_coretype_cooling_down", "1 for each coretype skipped for new"
                                    " jobs after repeated capacity failures (failover.cooldown_*).",
                                    labels=["coretype"])
        for coretype in sorted(self.cooling() if self.cooling is not None else ()):
            cooling.add_metric([coretype], 1.0)
        yield from (jobs, backlog, *budget.values(), cores_in_use, cores_cap, *spend.values(), protected,
                    cooling)


LEADER_HELP = "1 while this agent leads (works), 0 while it stands by for the lease (docs/ha.md)."


def _build_info(registry: CollectorRegistry) -> None:
    Info(f"{PREFIX}_build", "burst-agent build information.", registry=registry).info(
        {"version": __version__, "python": platform.python_version()}
    )


def standby_registry() -> CollectorRegistry:
    """What a standby agent serves: burst_agent_leader 0 and the build info, nothing of the shared state
    (the leader's job counts and budgets are not counted twice)."""
    registry = CollectorRegistry(auto_describe=True)
    Gauge(f"{PREFIX}_leader", LEADER_HELP, registry=registry).set(0)
    _build_info(registry)
    return registry


def _price(value: Decimal | float | str | None) -> float:
    return float(Decimal(str(value))) if value is not None else 0.0


class Metrics:
    """Every burst-agent metric, in a registry of its own; the pipeline calls the event methods."""

    def __init__(
        self,
        *,
        per_user_labels: bool = False,
        registry: CollectorRegistry | None = None,
        partitions: tuple[str, ...] = DEFAULT_PARTITIONS,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.per_user_labels = per_user_labels
        r = self.registry
        self._scrape = _ScrapeCollector(frozenset(partitions) | {""})
        r.register(self._scrape)
        self.submitted = Counter(
            f"{PREFIX}_jobs_submitted", "Jobs submitted to Rescale.", registry=r
        )
        self.finished = Counter(
            f"{PREFIX}_jobs_finished", "Jobs that reached a final state.", ["state"], registry=r
        )
        self.failed = Counter(
            f"{PREFIX}_jobs_failed", "Jobs that ended FAILED, by failure class.", ["reason"], registry=r
        )
        self.api_requests = Counter(
            f"{PREFIX}_api_requests", "HTTP requests to the Rescale API (each attempt); code 'none' when"
            " no response came.", ["endpoint", "method", "code"], registry=r,
        )
        self.api_duration = Histogram(
            f"{PREFIX}_api_request_duration_seconds", "Time until the Rescale API response headers arrived.",
            ["endpoint", "method"], buckets=API_BUCKETS, registry=r,
        )
        self.rate_limited = Counter(
            f"{PREFIX}_api_rate_limited_responses", "HTTP 429 answers from the Rescale API.", ["scope"],
            registry=r,
        )
        self.transfer_bytes = Counter(
            f"{PREFIX}_transfer_bytes", "Bytes moved to (upload) or from (download) Rescale storage.",
            ["direction"], registry=r,
        )
        self.transfer_duration = Histogram(
            f"{PREFIX}_transfer_duration_seconds", "Duration of one file transfer.", ["direction"],
            buckets=TRANSFER_BUCKETS, registry=r,
        )
        self.queue_wait_seconds = Histogram(
            f"{PREFIX}_queue_wait_seconds", "From spool intake until the remote job started executing.",
            buckets=QUEUE_WAIT_BUCKETS, registry=r,
        )
        self.remote_run_seconds = Histogram(
            f"{PREFIX}_remote_run_seconds", "Remote run time of finished jobs.", buckets=REMOTE_RUN_BUCKETS,
            registry=r,
        )
        user = ["user"] if per_user_labels else []
        self.core_seconds = Counter(
            f"{PREFIX}_remote_core_seconds", "Core-seconds used on Rescale (cores x run seconds).",
            ["coretype", *user], registry=r,
        )
        self.cost = Counter(
            f"{PREFIX}_estimated_cost", "Estimated compute cost from the coretype price per core-hour"
            " (price-list currency).", ["coretype", "project", *user], registry=r,
        )
        self.capacity_failovers = Counter(
            f"{PREFIX}_capacity_failovers", "Remote jobs Rescale could not place (no capacity) that were"
            " created again on the next coretype, by the coretype that had none.", ["coretype"], registry=r,
        )
        self.last_poll = Gauge(
            f"{PREFIX}_last_successful_poll_timestamp_seconds",
            "When the last status poll of Rescale succeeded (Unix time).", registry=r,
        )
        self.leader = Gauge(f"{PREFIX}_leader", LEADER_HELP, registry=r)
        self.leader.set(1)  # a working agent leads (with SQLite, the only one); see standby_registry
        _build_info(r)
        # Known label values start at zero, so rate() and alerts see them before the first event.
        for state in FINISHED_STATES:
            self.finished.labels(state=state.value)
        for reason in FAILURE_CLASSES:
            self.failed.labels(reason=reason)
        for direction in DIRECTIONS:
            self.transfer_bytes.labels(direction=direction)
        for scope in SCOPES:
            self.rate_limited.labels(scope=scope)

    # -- scrape-time sources -----------------------------------------------------------------------

    def watch_store(self, store_or_path: object) -> None:
        """Count jobs from a JobStore (its `.path`) or a state database path at each scrape."""
        path = getattr(store_or_path, "path", store_or_path)
        self._scrape.job_counts = job_counts_reader(Path(str(path)))

    def watch_job_counts(self, counts: JobCounts) -> None:
        """Count jobs with any callable returning (scheduler, partition, state, count) rows."""
        self._scrape.job_counts = counts

    def watch_spool(self, backlog: Callable[[], int]) -> None:
        """E.g. `lambda: len(spool.list_incoming())`."""
        self._scrape.spool_backlog = backlog

    def watch_budgets(self, budgets: Budgets) -> None:
        """The client's RateBudgets (`client.budgets`)."""
        self._scrape.budgets = budgets

    def watch_budget_waiting(self, source: Callable[[], Mapping[str, int]]) -> None:
        """{scope: jobs waiting for its budget} at each scrape (the agent's dispatcher)."""
        self._scrape.budget_waiting = source

    def watch_spending(self, source: Callable[[], Iterable[tuple[str, float, float, float]]]) -> None:
        """[(account, spent this month, budget, warn fraction)] at each scrape (pipeline.spendcap)."""
        self._scrape.spending = source

    def watch_protection(self, source: Callable[[], bool]) -> None:
        """Whether the agent is in protected mode (pipeline/protect.py), at each scrape."""
        self._scrape.protected = source

    def watch_cooling(self, source: Callable[[], Mapping[str, float]]) -> None:
        """{coretype: when its cool-down ends} at each scrape (pipeline/failover.py)."""
        self._scrape.cooling = source

    def capacity_failover(self, coretype: str) -> None:
        self.capacity_failovers.labels(coretype=coretype).inc()

    def watch_cloud_cores(self, source: Callable[[], tuple[int, int | None]]) -> None:
        """(cloud cores in use, agent.max_cloud_cores) at each scrape, e.g. pipeline.corecap.cloud_cores."""
        self._scrape.cloud_cores = source

    # -- events from the pipeline ------------------------------------------------------------------

    def job_submitted(self) -> None:
        self.submitted.inc()

    def job_finished(
        self, state: JobState | str, reason_class: str | None = None, failed_from: JobState | None = None
    ) -> None:
        """A job reached DONE, FAILED or CANCELLED; a FAILED one also counts under its failure class.

        `reason_class` is mapped by failure_class(); `failed_from` (the state the job failed in)
        decides when the reason says nothing known.
        """
        final = JobState(state)
        if final not in FINISHED_STATES:
            raise ValueError(f"job_finished: {final.value} is not a final state")
        self.finished.labels(state=final.value).inc()
        if final is JobState.FAILED:
            self.failed.labels(reason=failure_class(reason_class, failed_from)).inc()

    def transferred(self, direction: str, nbytes: int, seconds: float) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"transfer direction must be one of {DIRECTIONS}, not {direction!r}")
        self.transfer_bytes.labels(direction=direction).inc(max(0, nbytes))
        self.transfer_duration.labels(direction=direction).observe(max(0.0, seconds))

    def queue_wait(self, seconds: float) -> None:
        self.queue_wait_seconds.observe(max(0.0, seconds))

    def remote_run(
        self,
        seconds: float,
        coretype: str,
        cores: int,
        project: str | None,
        price_per_core_hour: Decimal | float | str | None,
        user: str | None = None,
    ) -> None:
        """A remote run ended: run time, core-seconds and cost (price x cores x hours)."""
        seconds = max(0.0, seconds)
        self.remote_run_seconds.observe(seconds)
        self._usage(seconds, coretype, cores, project, price_per_core_hour, user)

    def _usage(self, seconds: float, coretype: str, cores: int, project: str | None,
               price_per_core_hour: Decimal | float | str | None, user: str | None) -> None:
        extra = {"user": user or ""} if self.per_user_labels else {}
        core_seconds = seconds * max(0, cores)
        self.core_seconds.labels(coretype=coretype, **extra).inc(core_seconds)
        cost = core_seconds / 3600.0 * _price(price_per_core_hour)
        self.cost.labels(coretype=coretype, project=project or "", **extra).inc(cost)

    def poll_succeeded(self, ts: float) -> None:
        self.last_poll.set(ts)

    def observe_request(self, event: RequestEvent) -> None:
        """The RescaleClient `on_request` hook: one call per HTTP attempt."""
        code = str(event.status) if event.status is not None else "none"
        self.api_requests.labels(endpoint=event.endpoint, method=event.method, code=code).inc()
        self.api_duration.labels(endpoint=event.endpoint, method=event.method).observe(event.duration_s)
        if event.status == 429:
            self.rate_limited.labels(scope=event.scope).inc()

    # -- helpers for job records -------------------------------------------------------------------

    def on_state_change(self, change: StateChange) -> None:
        """The pipeline's transitions, as a Context subscriber: submits, remote runs, final states."""
        job = change.job
        if job.state is JobState.SUBMITTED:
            self.job_submitted()
        elif job.state is JobState.STAGING_OUT:
            self.job_started_remotely(job)
            self.job_ran(job)
        elif job.terminal:
            self.job_finished(job.state, change.reason_class, failed_from=change.from_state)

    def job_started_remotely(self, job: JobRecord) -> None:
        """Queue wait of a job whose remote run just began (spool intake -> Executing)."""
        if job.remote.started_at is not None:
            self.queue_wait(job.remote.started_at - job.created_at)

    def job_ran(self, job: JobRecord) -> None:
        """Run time, core-seconds and cost of a job whose remote run has ended."""
        remote, plan = job.remote, plan_or_none(job)
        if remote.started_at is None or remote.finished_at is None or plan is None:
            return
        self.remote_run(remote.finished_at - remote.started_at, plan.coretype, plan.cores, plan.project,
                        plan.price_per_core_hour, user=job.origin.owner_name)

    def seed_usage(self, jobs: Iterable[JobRecord]) -> int:
        """At start: the core-seconds and cost counters carry on from the runs in the store, so they
        survive restarts (the run-time histogram starts afresh). Returns the runs counted."""
        counted = 0
        for job in jobs:
            remote, plan = job.remote, plan_or_none(job)
            if remote.started_at is None or remote.finished_at is None or plan is None:
                continue
            self._usage(max(0.0, remote.finished_at - remote.started_at), plan.coretype, plan.cores,
                        plan.project, plan.price_per_core_hour, job.origin.owner_name)
            counted += 1
        return counted

    def exposition(self) -> bytes:
        """The text exposition format, as a scrape would see it."""
        return generate_latest(self.registry)


@dataclass
class MetricsServer:
    """The /metrics HTTP endpoint; `stop()` shuts it down and frees the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve(metrics: Metrics | CollectorRegistry, host: str = "127.0.0.1", port: int = 9464) -> MetricsServer:
    """Serve /metrics on host:port (loopback by default; port 0 picks a free one) in a daemon thread."""
    from prometheus_client import start_http_server

    registry = metrics.registry if isinstance(metrics, Metrics) else metrics
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
