"""Rate budgets: Rescale's scopes, target fraction, burst, waiting when empty, drains (fake clock)."""

from __future__ import annotations

import pytest

from burst_agent.config import ConfigError, RateLimits, config_from_mapping
from burst_agent.rescale.ratelimit import (
    BILLING,
    COOLDOWN_MAX_S,
    FILE_ACCESS,
    JOB_SUBMISSION,
    JOBS_USAGE,
    USER,
    BudgetExhausted,
    RateBudgets,
    scope_for,
    spending,
)


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
    ("POST", "/jobs/{id}/submit/", JOB_SUBMISSION),
    ("POST", "/jobs/", JOBS_USAGE),  # create is jobs-usage in Rescale's own client, not submission
    ("GET", "/jobs/", JOBS_USAGE), ("GET", "/jobs/{id}/statuses/", JOBS_USAGE),
    ("POST", "/jobs/{id}/stop/", JOBS_USAGE), ("GET", "/jobs/{id}/runs/{run}/tail/{path}/", JOBS_USAGE),
    ("GET", "/jobs/{id}/submit/", JOBS_USAGE),
    ("POST", "/files/contents/", FILE_ACCESS), ("GET", "/files/{id}/contents/", FILE_ACCESS),
    ("GET", "/billing/computeprices/", BILLING),
    ("GET", "/organizations/{org}/workspaces/{workspace}/billing/", BILLING),
    ("GET", "/organizations/{org}/workspaces/{workspace}/billing/projects/{project}/csv/", BILLING),
    ("GET", "/coretypes/", USER), ("POST", "/organizations/{org}/jobs/{id}/project-assignment/", USER),
])
def test_scope_by_method_and_endpoint(method, template, scope):
    assert scope_for(method, template) == scope


def test_defaults_are_rescale_limits_at_85_percent_with_interlink_bursts():
    b = RateBudgets()
    submission = b.state(JOB_SUBMISSION)
    assert (submission.limit_per_hour, submission.rate_per_hour, submission.capacity) == \
        pytest.approx((1000, 850, 50))
    assert (b.capacity(JOBS_USAGE), b.capacity(USER)) == (300, 150)
    assert b.state(JOBS_USAGE).rate_per_hour == pytest.approx(76500)


def test_burst_goes_at_once_then_waits():
    fake = FakeTime()
    b = budgets(fake, user_per_hour=360.0, user_burst=6, target_fraction=1.0)  # 0.1/s
    waits = [b.acquire(USER) for _ in range(8)]
    assert waits[:6] == [0.0] * 6
    assert waits[6:] == pytest.approx([10.0, 10.0])  # each waiter reserved its own slot
    assert fake.sleeps == pytest.approx([10.0, 10.0])
    assert b.state(USER).spent == 8 and b.state(USER).waited_s == pytest.approx(20.0)


def test_remaining_refills_with_time_up_to_capacity():
    fake = FakeTime()
    b = budgets(fake, user_per_hour=3600.0, user_burst=60, target_fraction=1.0)  # 1/s
    for _ in range(10):
        b.acquire(USER)
    assert b.remaining(USER) == pytest.approx(50.0)
    fake.now += 5
    assert b.remaining(USER) == pytest.approx(55.0)
    fake.now += 1000
    assert b.remaining(USER) == pytest.approx(60.0)


def test_disabled_budgets_never_wait_but_still_count():
    fake = FakeTime()
    b = budgets(fake, job_submission_per_hour=1.0, enabled=False)
    assert [b.acquire(JOB_SUBMISSION) for _ in range(5)] == [0.0] * 5 and fake.sleeps == []
    assert b.state(JOB_SUBMISSION).spent == 5


def test_scopes_are_independent():
    fake = FakeTime()
    b = budgets(fake, job_submission_per_hour=60.0, job_submission_burst=1, target_fraction=1.0)
    b.acquire(JOB_SUBMISSION)
    assert b.acquire(JOBS_USAGE) == 0.0
    assert b.acquire(JOB_SUBMISSION) == pytest.approx(60.0)


def test_a_429_drains_only_its_scope_for_retry_after():
    fake = FakeTime()
    b = budgets(fake, job_submission_per_hour=3600.0, target_fraction=1.0)
    b.drain(JOB_SUBMISSION, for_s=30.0)
    assert b.state(JOB_SUBMISSION).seconds_until() == pytest.approx(31.0)
    assert b.remaining(JOBS_USAGE) == 300
    b.drain(USER, for_s=1e9)  # a hostile Retry-After is capped
    assert b.state(USER).seconds_until() == pytest.approx(COOLDOWN_MAX_S + 0.5)  # 2/s


def test_drain_all_empties_every_bucket_so_requests_go_at_the_steady_rate():
    fake = FakeTime()
    b = budgets(fake, job_submission_per_hour=3600.0, target_fraction=1.0)
    b.drain()
    assert all(b.remaining(s) == pytest.approx(0.0) for s in (USER, JOB_SUBMISSION, FILE_ACCESS))
    assert b.acquire(JOB_SUBMISSION) == pytest.approx(1.0)  # one token a second, none saved up


def test_old_config_names_still_read_and_both_names_are_refused():
    limits = config_from_mapping({"api": {"rate_limits": {"job_reads_per_hour": 5, "other_per_hour": 7}}})
    assert (limits.api.rate_limits.jobs_usage_per_hour, limits.api.rate_limits.user_per_hour) == (5, 7)
    with pytest.raises(ConfigError, match=r"rate_limits\.other_per_hour: the older name of user_per_hour"):
        config_from_mapping({"api": {"rate_limits": {"other_per_hour": 5, "user_per_hour": 7}}})


def test_work_that_may_not_wait_raises_instead_of_sleeping():
    fake = FakeTime()
    b = budgets(fake, jobs_usage_burst=2, jobs_usage_per_hour=3600, target_fraction=1.0)
    with spending("finish"):
        b.acquire(JOBS_USAGE), b.acquire(JOBS_USAGE)
        with pytest.raises(BudgetExhausted) as caught:
            b.acquire(JOBS_USAGE)
    assert (caught.value.scope, caught.value.wait_s, fake.sleeps) == (JOBS_USAGE, 1.0, [])
    assert b.state(JOBS_USAGE).spent == 2


def taken(b: RateBudgets, name: str) -> int:
    """Tokens of jobs-usage that work of kind `name` takes before it must wait."""
    with spending(name):
        for n in range(1000):
            try:
                b.acquire(JOBS_USAGE)
            except BudgetExhausted:
                return n
    raise AssertionError("never ran out")


def test_starts_and_tails_leave_their_floor_to_the_work_that_goes_first():
    fake = FakeTime()
    b = budgets(fake, jobs_usage_burst=100)
    assert [taken(b, "tail"), taken(b, "start"), taken(b, "finish")] == [80, 19, 1]  # floors 20, 1, 0


def test_the_poll_and_a_cancel_reserve_and_sleep_where_a_start_would_wait():
    fake = FakeTime()
    b = budgets(fake, jobs_usage_burst=1, jobs_usage_per_hour=3600, target_fraction=1.0)
    with spending("poll"):
        b.acquire(JOBS_USAGE), b.acquire(JOBS_USAGE)
    with spending("cancel"):
        b.acquire(JOBS_USAGE)
    assert fake.sleeps == [1.0, 1.0]  # each took the next token to come, slept for it
    with spending("start"), pytest.raises(BudgetExhausted):
        b.acquire(JOBS_USAGE)
