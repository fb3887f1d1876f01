"""Retry policy: which requests repeat, full-jitter backoff, Retry-After parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burst_agent.config import ApiConfig
from burst_agent.rescale.retry import RetryPolicy, is_repeatable, parse_retry_after


@pytest.mark.parametrize(("method", "template", "repeatable"), [
    ("GET", "/jobs/{id}/", True), ("PUT", "/jobs/{id}/", True), ("PATCH", "/jobs/{id}/", True),
    ("DELETE", "/files/{id}/", True), ("POST", "/jobs/{id}/stop/", True), ("POST", "/jobs/{id}/tags/", True),
    ("POST", "/jobs/", False), ("POST", "/jobs/{id}/submit/", False), ("POST", "/files/contents/", False),
])
def test_repeatable_requests(method, template, repeatable):
    assert is_repeatable(method, template) is repeatable


@given(st.integers(0, 30), st.floats(0, 1, exclude_max=True))
def test_backoff_is_full_jitter_under_the_cap(retry_number, draw):
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=60.0, random=lambda: draw)
    wait = policy.backoff(retry_number)
    assert 0.0 <= wait <= min(60.0, 0.5 * 2**retry_number)
    assert wait == pytest.approx(draw * min(60.0, 0.5 * 2**retry_number))


def test_backoff_grows_exponentially_then_caps():
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=3.0, random=lambda: 1.0)
    assert [policy.backoff(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_policy_from_config():
    policy = RetryPolicy.from_config(ApiConfig(max_retries=2, backoff_base_s=0.1, backoff_max_s=5.0))
    assert (policy.max_retries, policy.backoff_base_s, policy.backoff_max_s) == (2, 0.1, 5.0)


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0), ("soon", None), ("", None), (None, None),
])
def test_parse_retry_after(value, seconds):
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(value, now) == seconds


def test_overlong_retry_after_is_not_waited_for():
    policy = RetryPolicy(max_retry_after_s=300.0)
    assert policy.wait_for_rate_limit(301.0, 0) is None
    assert policy.wait_for_rate_limit(12.0, 0) == 12.0
