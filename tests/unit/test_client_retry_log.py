"""The client's retry log line names the request, the failure, the try and the wait; never the token."""

from __future__ import annotations

import logging

import requests
import responses

from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token

BASE = "https://platform.rescale.com"


def _client() -> RescaleClient:
    retry = RetryPolicy(max_retries=2, backoff_base_s=1.0, sleep=lambda _s: None, random=lambda: 0.5)
    return RescaleClient(BASE, Token("tok-secret-xyz"), retry=retry)


@responses.activate
def test_retry_line_names_method_path_status_attempt_and_wait(caplog):
    responses.get(f"{BASE}/api/v2/jobs/j1/statuses/", status=503)
    responses.get(f"{BASE}/api/v2/jobs/j1/statuses/", json={"results": [], "next": None})
    with caplog.at_level(logging.WARNING, logger="burst_agent.rescale.client"):
        _client().job_statuses("j1")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "GET /api/v2/jobs/j1/statuses/ -> HTTP 503 (ServerError)" in line
    assert "attempt 1 of 3, next in 0.50 s" in line and "tok-secret-xyz" not in line


@responses.activate
def test_retry_line_names_a_connection_failure_without_the_query(caplog):
    responses.get(f"{BASE}/api/v2/jobs/", body=requests.ConnectionError("refused"))
    responses.get(f"{BASE}/api/v2/jobs/", json={"results": [], "next": None})
    with caplog.at_level(logging.WARNING, logger="burst_agent.rescale.client"):
        list(_client().iter_jobs(q="secret-query"))
    (line,) = [r.getMessage() for r in caplog.records]
    assert "GET /api/v2/jobs/ -> no answer (TransientError); attempt 1 of 3" in line
    assert "secret-query" not in line and "tok-secret-xyz" not in line
