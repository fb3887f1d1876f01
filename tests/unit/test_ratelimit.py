"""Rate budgets: scopes, burst, waiting when empty, refill (fake clock, no real sleeping)."""

from __future__ import annotations

import pytest

from burst_agent.config import RateLimits
from burst_agent.rescale.ratelimit import JOB_READS, OTHER, SUBMISSION, RateBudgets, scope_for


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def budgets(fake: FakeTime, **limits: float) -> RateBudgets:
    return RateBudgets(RateLimits(**limits), clock=lambda: fake.now, sleep=fake.sleep)


@pytest.mark.parametrize(("method", "template", "scope"), [
    ("POST", "/jobs/", SUBMISSION), ("POST", "/jobs/{id}/submit/", SUBMISSION),
    ("GET", "/jobs/", JOB_READS), ("GET", "/jobs/{id}/statuses/", JOB_READS),
    ("POST", "/jobs/{id}/stop/", OTHER), ("GET", "/coretypes/", OTHER), ("POST", "/files/contents/", OTHER),
])
def test_scope_by_method_and_endpoint(method, template, scope):
    assert scope_for(method, template) == scope


def test_defaults_follow_rescale_limits_with_a_one_minute_burst():
    b = RateBudgets()
    assert (b.capacity(SUBMISSION), b.capacity(JOB_READS), b.capacity(OTHER)) == pytest.approx(
        (1000 / 60, 90000 / 60, 7200 / 60))


def test_burst_goes_at_once_then_waits():
    fake = FakeTime()
    b = budgets(fake, other_per_hour=360.0)  # 0.1/s, burst max(1, 6) = 6
    waits = [b.acquire(OTHER) for _ in range(8)]
    assert waits[:6] == [0.0] * 6
    assert waits[6:] == pytest.approx([10.0, 10.0])  # each waiter reserved its own slot
    assert fake.sleeps == pytest.approx([10.0, 10.0])


def test_remaining_refills_with_time_up_to_capacity():
    fake = FakeTime()
    b = budgets(fake, other_per_hour=3600.0)  # 1/s, capacity 60
    for _ in range(10):
        b.acquire(OTHER)
    assert b.remaining(OTHER) == pytest.approx(50.0)
    fake.now += 5
    assert b.remaining(OTHER) == pytest.approx(55.0)
    fake.now += 1000
    assert b.remaining(OTHER) == pytest.approx(60.0)


def test_disabled_budgets_never_wait():
    fake = FakeTime()
    b = budgets(fake, job_submission_per_hour=1.0, enabled=False)
    assert [b.acquire(SUBMISSION) for _ in range(5)] == [0.0] * 5 and fake.sleeps == []


def test_scopes_are_independent():
    fake = FakeTime()
    b = budgets(fake, job_submission_per_hour=60.0)  # capacity 1
    b.acquire(SUBMISSION)
    assert b.acquire(JOB_READS) == 0.0
    assert b.acquire(SUBMISSION) == pytest.approx(60.0)


def test_drain_empties_every_bucket_so_requests_go_at_the_steady_rate():
    fake = FakeTime()
    b = budgets(fake, other_per_hour=360.0, job_submission_per_hour=3600.0)
    b.drain()
    assert b.remaining(OTHER) == pytest.approx(0.0) and b.remaining(SUBMISSION) == pytest.approx(0.0)
    assert b.acquire(SUBMISSION) == pytest.approx(1.0)  # one token a second, none saved up
    assert b.acquire(SUBMISSION) == pytest.approx(1.0)
