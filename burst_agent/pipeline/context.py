"""What every stage needs: config, client, store, spool, coretype catalogue, logger, clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from burst_agent.config import Config
from burst_agent.lifecycle import JobState
from burst_agent.metrics import Metrics
from burst_agent.model import Coretype
from burst_agent.rescale.client import RescaleClient
from burst_agent.spool import Spool
from burst_agent.store import JobRecord, JobStore
from burst_agent.translate import load_catalogue

CATALOGUE_TTL_S = 3600.0

REMOTE_LOG = "process_output.log"


@dataclass
class Catalogue:
    """The coretype catalogue, fetched once and refreshed hourly (a failed refresh keeps the old one)."""

    fetch: Callable[[], list[dict[str, Any]]]
    clock: Callable[[], float] = time.monotonic
    _items: list[Coretype] | None = None
    _fetched_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> list[Coretype]:
        with self._lock:
            stale = self._items is None or self.clock() - self._fetched_at > CATALOGUE_TTL_S
            if stale:
                try:
                    self._items = load_catalogue(self.fetch())
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
    store: JobStore
    spool: Spool
    catalogue: Catalogue
    log: Any
    clock: Callable[[], float] = time.time
    metrics: Metrics = field(default_factory=Metrics)

    def finish(
        self, job: JobRecord, state: JobState, reason: str, *, reason_class: str | None = None, **fields: Any
    ) -> JobRecord:
        """The one way a job ends: the final transition and its metrics (failure class, see metrics)."""
        failed_from = job.state
        job = self.store.transition(job.id, state, reason, **fields)
        self.metrics.job_finished(state, reason_class, failed_from=failed_from)
        return job

    def job_log(self, job: JobRecord) -> Any:
        """A logger carrying the job's ids on every line."""
        return self.log.bind(
            job=job.id, entry=job.entry, remote_job=job.remote_job_id, scheduler_job=job.scheduler_job_id
        )


def build_context(config: Config, *, log: Any | None = None, **client_options: Any) -> Context:
    """Wire the real collaborators from a config: token, client, store, spool, catalogue."""
    from burst_agent.logsetup import get_logger, register_secret
    from burst_agent.secret import TokenSource, load_token

    api = config.api
    token = load_token(TokenSource(credential_name=api.token_credential, file=api.token_file,
                                   env_var=api.token_env))
    register_secret(token.reveal())
    metrics = Metrics(per_user_labels=config.metrics.per_user_labels, partitions=config.metrics.partitions)
    client = RescaleClient.from_config(api, token, on_request=metrics.observe_request, **client_options)
    store = JobStore(config.agent.state_db)
    spool = Spool(config.agent.spool_dir).ensure()
    metrics.watch_budgets(client.budgets)
    metrics.watch_store(store)
    metrics.watch_spool(lambda: len(spool.list_incoming()))
    ctx = Context(config=config, client=client, store=store, spool=spool,
                  catalogue=Catalogue(fetch=client.list_coretypes), log=log or get_logger(),
                  metrics=metrics)
    from burst_agent.pipeline.corecap import cloud_cores  # corecap imports this module

    metrics.watch_cloud_cores(lambda: cloud_cores(ctx))
    return ctx
