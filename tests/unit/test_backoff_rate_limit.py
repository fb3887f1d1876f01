"""The agent's per-job backoff: a 429 waits its Retry-After and leaves the failure exponent alone."""

from __future__ import annotations

from burst_agent.agent import RETRY_AFTER_MAX_S, Backoff


def test_a_429_waits_retry_after_and_does_not_raise_the_exponent() -> None:
    now = [0.0]
    backoff = Backoff(clock=lambda: now[0])
    for _ in range(2):  # exponent 2: the next failure waits 2 s * 2**2
        backoff.failed("j")
    waits = [backoff.failed("j", 1.0) for _ in range(20)]  # twenty 429s asking for 1 s each
    assert all(1.0 <= wait <= 1.25 for wait in waits)
    assert 8.0 <= backoff.failed("j") <= 10.0  # not 2 s * 2**22 capped at 300 s


def test_a_hostile_retry_after_cannot_park_a_job() -> None:
    backoff = Backoff(clock=lambda: 0.0)
    assert backoff.failed("j", 10.0**9) <= RETRY_AFTER_MAX_S * 1.25
