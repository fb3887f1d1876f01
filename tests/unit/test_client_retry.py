"""RescaleClient retries: what is repeated, what never is, Retry-After, and rate budgets."""

from __future__ import annotations

import pytest
import requests
import responses
from urllib3.exceptions import ProtocolError

from burst_agent.config import RateLimits
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.errors import RateLimitedError, ServerError, TransientError
from burst_agent.rescale.ratelimit import JOB_SUBMISSION, JOBS_USAGE, RateBudgets
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token

BASE = "https://platform.rescale.com"
API = BASE + "/api/v2"


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def fake():
    return FakeTime()


def make_client(fake: FakeTime, limits: RateLimits | None = None) -> RescaleClient:
    retry = RetryPolicy(max_retries=3, backoff_base_s=1.0, sleep=fake.sleep, random=lambda: 0.5)
    budgets = RateBudgets(limits or RateLimits(enabled=False), clock=lambda: fake.now, sleep=fake.sleep)
    return RescaleClient(BASE, Token("tok-abc"), retry=retry, budgets=budgets)


def test_get_is_retried_then_succeeds(rsps, fake):
    rsps.get(f"{API}/jobs/j1/", status=503)
    rsps.get(f"{API}/jobs/j1/", status=502)
    rsps.get(f"{API}/jobs/j1/", json={"id": "j1"})
    assert make_client(fake).get_job("j1") == {"id": "j1"}
    assert fake.sleeps == [0.5, 1.0]  # full jitter: random() * base * 2**n


def test_gives_up_after_max_retries(rsps, fake):
    rsps.get(f"{API}/jobs/j1/", status=500)
    with pytest.raises(ServerError):
        make_client(fake).get_job("j1")
    assert len(rsps.calls) == 4 and len(fake.sleeps) == 3


@pytest.mark.parametrize(("url", "call"), [
    (f"{API}/jobs/", lambda c: c.create_job({"name": "x"})),
    (f"{API}/jobs/j1/submit/", lambda c: c.submit_job("j1")),
])
def test_create_and_submit_are_never_retried(rsps, fake, url, call):
    rsps.post(url, status=503)
    with pytest.raises(ServerError) as info:
        call(make_client(fake))
    assert info.value.ambiguous and "ambiguous" in str(info.value)
    assert len(rsps.calls) == 1 and fake.sleeps == []


def test_submit_connection_error_is_ambiguous(rsps, fake):
    reset = requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError()))
    rsps.post(f"{API}/jobs/j1/submit/", body=reset)
    with pytest.raises(TransientError) as info:
        make_client(fake).submit_job("j1")
    assert info.value.ambiguous and len(rsps.calls) == 1


def test_retry_after_is_honoured(rsps, fake):
    rsps.get(f"{API}/coretypes/", status=429, headers={"Retry-After": "7"})
    rsps.get(f"{API}/coretypes/", json={"count": 0, "next": None, "previous": None, "results": []})
    assert make_client(fake).list_coretypes() == []
    assert fake.sleeps == [7.0]


def test_create_rate_limited_is_not_retried_nor_ambiguous(rsps, fake):
    rsps.post(f"{API}/jobs/", status=429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimitedError) as info:
        make_client(fake).create_job({})
    assert info.value.retry_after == 30.0 and not info.value.ambiguous and fake.sleeps == []


def test_stop_is_retried(rsps, fake):
    rsps.post(f"{API}/jobs/j1/stop/", status=504)
    rsps.post(f"{API}/jobs/j1/stop/", status=202)
    make_client(fake).stop_job("j1")
    assert len(rsps.calls) == 2


def test_request_waits_for_an_empty_budget(rsps, fake):
    limits = RateLimits(job_submission_per_hour=3600.0, target_fraction=1.0)  # one a second, burst of 50
    client = make_client(fake, limits)
    rsps.post(f"{API}/jobs/j1/submit/", status=200)
    for _ in range(51):
        client.submit_job("j1")
    assert fake.sleeps == [pytest.approx(1.0)]
    assert client.budgets.remaining(JOB_SUBMISSION) == pytest.approx(0.0)
    assert client.budgets.remaining(JOBS_USAGE) == pytest.approx(300.0)
