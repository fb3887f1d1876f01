"""What every stage needs: config, client, store, spool, coretype catalogue, logger, clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from burst_agent.command_wrapper import REMOTE_LOG as REMOTE_LOG  # the remote command never packs it
from burst_agent.config import Config
from burst_agent.ledger import JobLedger
from burst_agent.lifecycle import JobState
from burst_agent.metrics import Metrics
from burst_agent.model import Coretype
from burst_agent.pipeline.cooldown import Cooldown
from burst_agent.pipeline.protect import Protection
from burst_agent.record import JobRecord, Result, StateChange
from burst_agent.rescale.client import RescaleClient
from burst_agent.spool import Spool
from burst_agent.translate import load_catalogue

CATALOGUE_TTL_S = 3600.0


@dataclass
class Catalogue:
    """The coretype catalogue, fetched once and refreshed hourly (a failed refresh keeps the old one)."""

    fetch: Callable[[], list[dict[str, Any]]]
    # GET /billing/computeprices/, fetched with it when a priority tier is priced from a plan.
    fetch_prices: Callable[[], list[dict[str, Any]]] | None = None
    clock: Callable[[], float] = time.monotonic
    _items: list[Coretype] | None = None
    _fetched_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> list[Coretype]:
        with self._lock:
            stale = self._items is None or self.clock() - self._fetched_at > CATALOGUE_TTL_S
            if stale:
                try:
                    prices = self.fetch_prices() if self.fetch_prices is not None else None
                    self._items = load_catalogue(self.fetch(), prices)
                    self._fetched_at = self.clock()
                except Exception:
                    if self._items is None:
                        raise
            assert self._items is not None  # narrowing only: set above or raised
            return self._items


@dataclass
class Context:
    """Collaborators handed to each stage; tests build one with fakes where they need to."""

    config: Config
    client: RescaleClient
    store: JobLedger
    spool: Spool
    catalogue: Catalogue
    log: Any
    clock: Callable[[], float] = time.time
    metrics: Metrics = field(default_factory=Metrics)
    protection: Protection = field(default_factory=Protection)  # the agent's protected mode
    cooldown: Cooldown = field(default_factory=Cooldown)  # coretypes skipped after capacity failures

    subscribers: list[Callable[[StateChange], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.subscribers.insert(0, self.metrics.on_state_change)

    def transition(self, job: JobRecord, state: JobState, reason: str, *, reason_class: str | None = None,
                   **changes: Any) -> JobRecord:
        """Every stage's state change: persisted, then told to the subscribers."""
        moved = self.store.transition(job.id, state, reason, **changes)
        change = StateChange(moved, job.state, reason_class)
        for subscriber in self.subscribers:
            subscriber(change)
        return moved

    def finish(self, job: JobRecord, state: JobState, reason: str, *, reason_class: str | None = None,
               exit_code: int | None = None, failure_reason: str | None = None,
               quarantine: bool = False) -> JobRecord:
        """The one way a job ends: the final transition (its result), the spool entry retired, or
        quarantined with `reason` when the entry itself could not run (`quarantine`), subscribers told."""
        job = self.transition(job, state, reason, reason_class=reason_class,
                              result=Result(exit_code, failure_reason))
        if quarantine:
            self.spool.quarantine(job.entry, reason)
        else:
            self.spool.retire(job.entry)
        return job

    def job_log(self, job: JobRecord) -> Any:
        """A logger carrying the job's ids on every line."""
        return self.log.bind(
            job=job.id, entry=job.entry, remote_job=job.remote_job_id,
            scheduler_job=job.origin.scheduler_job_id,
        )
