"""Wire the real collaborators of a Context from a config: token, client, store, spool, catalogue."""

from __future__ import annotations

from typing import Any

from burst_agent.cataloguecopy import catalogue_dir, published
from burst_agent.config import Config
from burst_agent.logsetup import get_logger, register_secret
from burst_agent.metrics import Metrics
from burst_agent.pipeline.context import Catalogue, Context
from burst_agent.pipeline.cooldown import Cooldown
from burst_agent.pipeline.corecap import cloud_cores
from burst_agent.pipeline.protect import Protection
from burst_agent.pipeline.spendcap import spending_gauges
from burst_agent.rescale.client import RescaleClient
from burst_agent.secret import TokenSource, load_token
from burst_agent.spool import Spool
from burst_agent.stores import open_store


def build_context(config: Config, *, log: Any | None = None, **client_options: Any) -> Context:
    """Wire the real collaborators from a config: token, client, store, spool, catalogue."""
    api = config.api
    token = load_token(TokenSource(credential_name=api.token_credential, file=api.token_file,
                                   env_var=api.token_env))
    register_secret(token.reveal())
    metrics = Metrics(per_user_labels=config.metrics.per_user_labels, partitions=config.metrics.partitions)
    client = RescaleClient.from_config(api, token, on_request=metrics.observe_request, **client_options)
    store = open_store(config.agent.state_db)
    spool = Spool(config.agent.spool_dir).ensure()
    metrics.watch_budgets(client.budgets)
    metrics.watch_job_counts(store.job_counts_reader())
    metrics.watch_spool(lambda: len(spool.list_incoming()))
    metrics.seed_usage(store.jobs(with_remote_id=True))  # cost and core-seconds carry on across restarts
    plan_priced = bool(config.translate.priority_tiers.plan_prices)  # a tier priced from computeprices
    copies = catalogue_dir(spool.root)  # for `burst-agent size-charges` (chargesize.py)
    catalogue = Catalogue(fetch=published(client.list_coretypes, copies / "coretypes.json"),
                          fetch_prices=published(client.compute_prices, copies / "computeprices.json")
                          if plan_priced else None)
    ctx = Context(config=config, client=client, store=store, spool=spool, catalogue=catalogue,
                  log=log or get_logger(), metrics=metrics,
                  protection=Protection(probe_s=config.agent.protected_mode_probe_s),
                  cooldown=Cooldown.of(config.failover))
    metrics.watch_cloud_cores(lambda: cloud_cores(ctx))
    metrics.watch_spending(lambda: spending_gauges(ctx))
    metrics.watch_protection(lambda: ctx.protection.active)
    metrics.watch_cooling(lambda: ctx.cooldown.cooling(ctx.clock()))
    return ctx
