"""RescaleClient typed errors: one class per failure, detail kept, the token never shown."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest
import responses

from burst_agent.config import RateLimits
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitedError,
    RescaleError,
    ServerError,
    TransientError,
    ValidationError,
)
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token

BASE = "https://platform.rescale.com"
API = BASE + "/api/v2"
TOKEN = "tok-0123456789abcdef"


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def make_client(base: str = BASE, retries: int = 0) -> RescaleClient:
    retry = RetryPolicy(max_retries=retries, sleep=lambda s: None)
    return RescaleClient(base, Token(TOKEN), retry=retry, budgets=RateBudgets(RateLimits(enabled=False)))


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [(400, ValidationError, False), (401, AuthenticationError, False), (403, AuthenticationError, False),
     (404, NotFoundError, False), (409, RescaleError, False), (429, RateLimitedError, True),
     (500, ServerError, True), (503, ServerError, True)],
)
def test_status_maps_to_error_type(rsps, status, kind, transient):
    rsps.get(f"{API}/jobs/abc/", status=status, json={"detail": "nope"})
    with pytest.raises(kind) as info:
        make_client().get_job("abc")
    err = info.value
    assert type(err) is kind and err.transient is transient
    assert (err.status, err.method, err.path, err.detail) == (status, "GET", "/api/v2/jobs/abc/", "nope")


def test_validation_error_keeps_field_errors(rsps):
    fields = {"jobanalyses": [{"hardware": {"coresPerSlot": ["3 is not a valid core count."]}}]}
    rsps.post(f"{API}/jobs/", status=400, json=fields)
    with pytest.raises(ValidationError) as info:
        make_client().create_job({"name": "x"})
    assert info.value.field_errors == fields
    assert "coresPerSlot" in str(info.value)


def test_rate_limited_error_parses_retry_after(rsps):
    rsps.get(f"{API}/coretypes/", status=429, headers={"Retry-After": "42"})
    with pytest.raises(RateLimitedError) as info:
        make_client().list_coretypes()
    assert info.value.retry_after == 42.0


def closed_port() -> int:
    with socket.socket() as sock:  # a loopback port with nobody listening
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_transient():
    with pytest.raises(TransientError) as info:
        make_client(f"http://127.0.0.1:{closed_port()}").get_job("abc")
    assert info.value.transient and info.value.status is None
    assert info.value.__cause__ is not None  # the cause chain is kept


def test_token_never_shown_even_when_the_server_echoes_it(rsps, caplog):
    echo = {"detail": f"Invalid token 'Token {TOKEN}'", TOKEN: [TOKEN]}
    rsps.get(f"{API}/jobs/abc/", status=401, json=echo)
    rsps.post(f"{API}/jobs/", status=400, json=echo)
    caplog.set_level(logging.DEBUG)
    client = make_client()
    for call in (lambda: client.get_job("abc"), lambda: client.create_job({})):
        with pytest.raises(RescaleError) as info:
            call()
        shown = [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value)),
                 repr(getattr(info.value, "field_errors", None))]
        assert all(TOKEN not in text for text in shown)
        assert "<redacted>" in str(info.value)
    assert caplog.records and TOKEN not in caplog.text


def test_token_absent_from_transport_error_and_retry_logs(caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransientError) as info:
        make_client(f"http://127.0.0.1:{closed_port()}", retries=2).get_job("abc")
    text = "".join(traceback.format_exception(info.value))
    assert TOKEN not in text and TOKEN not in caplog.text
    assert "retrying" in caplog.text
