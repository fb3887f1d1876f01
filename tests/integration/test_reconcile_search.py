"""Reconciling an interrupted create against the emulator: found by text search, or without it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import structlog

from burst_agent.config import RateLimits
from burst_agent.pipeline.submit import find_remote
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.secret import Token

KEY = "burst-ci-20261128T101010-aa11"


class LaggingSearch:
    """The real client, but its text search does not see new jobs yet (an index behind the create)."""

    def __init__(self, client: RescaleClient) -> None:
        self.client = client

    def iter_jobs(self, **params):
        return iter(()) if params.get("q") else self.client.iter_jobs(**params)


@pytest.fixture
def client(emulator, job_body):
    budgets = RateBudgets(RateLimits(enabled=False))
    with RescaleClient(emulator.url, Token(emulator.token), budgets=budgets) as c:
        c.create_job({**job_body(), "name": "another job [burst-ci-other]"})
        yield c


@pytest.mark.parametrize("lagging", [False, True], ids=["search", "search_lags"])
def test_the_job_an_interrupted_create_made_is_found(client, job_body, lagging):
    made = client.create_job({**job_body(), "name": f"run.sh [{KEY}]"})["id"]
    ctx = SimpleNamespace(client=LaggingSearch(client) if lagging else client,
                          job_log=lambda job: structlog.get_logger())
    assert find_remote(ctx, SimpleNamespace(reconcile_key=KEY, attempt=0)) == made
    assert find_remote(ctx, SimpleNamespace(reconcile_key="burst-ci-never-created", attempt=0)) is None
