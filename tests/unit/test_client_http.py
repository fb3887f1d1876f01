"""RescaleClient request shaping: auth, User-Agent, paths, pagination, endpoints (with `responses`)."""

from __future__ import annotations

import json

import pytest
import responses

from burst_agent import __version__
from burst_agent.config import RateLimits
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.errors import PaginationError
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token

BASE = "https://platform.rescale.com"
API = BASE + "/api/v2"
TOKEN = "tok-0123456789abcdef"
STANDARD_PLUS = {
    "code": "standard-plus", "name": "Marble", "price": 0.1, "memory": 3750, "cores": [1, 2, 4, 8],
}
HPC_TEST = {"code": "test", "name": "HPC Test", "price": 0.25, "memory": 1500, "cores": [1]}
STATUSES = [  # the doc's sample, newest first
    {"status": "Completed", "statusDate": "2016-04-21T17:24:34.898495Z",
     "statusReason": "Completed successfully"},
    {"status": "Executing", "statusDate": "2016-04-21T17:15:59.012000Z", "statusReason": None},
    {"status": "Pending", "statusDate": "2016-04-21T17:06:32.086507Z", "statusReason": None},
]


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def events():
    return []


@pytest.fixture
def client(events):
    budgets = RateBudgets(RateLimits(enabled=False))
    retry = RetryPolicy(sleep=lambda s: None)
    return RescaleClient(BASE, Token(TOKEN), retry=retry, budgets=budgets, on_request=events.append)


def page(results, next_=None, prev_key="previous"):
    return {"count": 99, prev_key: None, "results": results, "next": next_}


def test_token_header_and_user_agent(rsps, client):
    rsps.get(f"{API}/coretypes/", json=page([STANDARD_PLUS]))
    client.list_coretypes()
    sent = rsps.calls[0].request
    assert sent.headers["Authorization"] == f"Token {TOKEN}"
    assert sent.headers["User-Agent"] == f"burst-agent/{__version__}"


@pytest.mark.parametrize(
    ("call", "url"),
    [
        (lambda c: c.get_job("aabbcc"), f"{API}/jobs/aabbcc/"),
        (lambda c: c.get_file("WvNKdb"), f"{API}/files/WvNKdb/"),
        (lambda c: c.tail_run_file("XXXXX", 1, "airFoil2D/0/U"),
         f"{API}/jobs/XXXXX/runs/1/tail/airFoil2D/0/U/"),
        (lambda c: c.get_job_project("LeeKa", organization="acme"),
         f"{API}/organizations/acme/jobs/LeeKa/project-assignment/"),
    ],
)
def test_paths_get_api_prefix_and_trailing_slash(rsps, client, call, url):
    rsps.get(url, json={"id": "x"})
    call(client)
    assert rsps.calls[0].request.url.split("?")[0] == url


def test_pagination_follows_next_over_several_pages(rsps, client):
    # The doc's sample `next` lacks the trailing slash: the client adds it.
    # Every page asks for 1000 items, also where a `next` link leaves page_size out.
    last = page([{**HPC_TEST, "code": "c3"}], prev_key="prev")
    rsps.get(f"{API}/coretypes/?page=3&page_size=1000", json=last)
    rsps.get(f"{API}/coretypes/?page=2&page_size=1000", json=page([HPC_TEST], f"{API}/coretypes?page=3"))
    rsps.get(f"{API}/coretypes/?page_size=1000", json=page([STANDARD_PLUS], f"{API}/coretypes?page=2"))
    codes = [c["code"] for c in client.list_coretypes()]
    assert codes == ["standard-plus", "test", "c3"]
    assert [c.request.url for c in rsps.calls] == [
        f"{API}/coretypes/?page_size=1000", f"{API}/coretypes/?page=2&page_size=1000",
        f"{API}/coretypes/?page=3&page_size=1000"]


@pytest.mark.parametrize(
    "foreign",
    ["https://evil.example.com/api/v2/coretypes/?page=2", "http://platform.rescale.com/api/v2/coretypes/?page=2",
     "https://platform.rescale.com:8443/api/v2/coretypes/?page=2"],
)
def test_foreign_next_is_refused(rsps, client, foreign):
    rsps.get(f"{API}/coretypes/", json=page([STANDARD_PLUS], foreign))
    with pytest.raises(PaginationError, match="refusing a next link"):
        client.list_coretypes()
    assert len(rsps.calls) == 1


def test_next_looping_back_is_refused(rsps, client):
    rsps.get(f"{API}/jobs/", json=page([{"id": "a"}], f"{API}/jobs/?page=2"))
    with pytest.raises(PaginationError, match="loops"):
        list(client.iter_jobs())


def test_iter_jobs_sends_filters(rsps, client):
    rsps.get(f"{API}/jobs/", json=page([{"id": "OsKBd"}]))
    jobs = list(client.iter_jobs(state="not_completed", q="#burst", page_size=50))
    assert jobs == [{"id": "OsKBd"}]
    assert rsps.calls[0].request.params == {"state": "not_completed", "q": "#burst", "page_size": "50"}


def test_job_statuses_all_pages_newest_first(rsps, client):
    rsps.get(f"{API}/jobs/cHDtgb/statuses/?page=2&page_size=1000", json=page([STATUSES[2], STATUSES[0]]))
    rsps.get(f"{API}/jobs/cHDtgb/statuses/", json=page([STATUSES[1]], f"{API}/jobs/cHDtgb/statuses/?page=2"))
    assert [s["status"] for s in client.job_statuses("cHDtgb")] == ["Completed", "Executing", "Pending"]


def test_cluster_statuses_404_means_no_cluster_yet(rsps, client):
    rsps.get(f"{API}/jobs/cHDtgb/cluster_statuses/", status=404, json={"detail": "Not found."})
    assert client.cluster_statuses("cHDtgb") is None


def test_create_job_posts_body_and_returns_job(rsps, client):
    body = {"name": "Example Job", "jobanalyses": [{"analysis": {"code": "user_included", "version": "0"}}]}
    rsps.post(f"{API}/jobs/", status=201, json={"id": "LeeKa", "name": "Example Job"})
    assert client.create_job(body)["id"] == "LeeKa"
    assert json.loads(rsps.calls[0].request.body) == body


@pytest.mark.parametrize("action", ["submit", "stop", "force_stop", "shutdown"])
def test_job_actions_post_to_their_endpoint(rsps, client, action):
    rsps.post(f"{API}/jobs/SsdkT/{action}/", status=202)
    getattr(client, "submit_job" if action == "submit" else f"{action}_job")("SsdkT")
    assert rsps.calls[0].request.method == "POST"


def test_tags_add_list_remove(rsps, client):
    rsps.post(f"{API}/jobs/j1/tags/", json={"name": "burst", "normalizedName": "burst"})
    rsps.get(f"{API}/jobs/j1/tags/", json=[{"name": "burst", "normalizedName": "burst"}])
    rsps.delete(f"{API}/jobs/j1/tags/", status=204)
    client.add_tag("j1", "burst")
    assert client.list_tags("j1") == ["burst"]
    client.remove_tag("j1", "burst")
    assert [json.loads(c.request.body) for c in rsps.calls if c.request.body] == [{"name": "burst"}] * 2


def test_compute_prices_accepts_a_bare_list(rsps, client):
    price = {"coreType": "sapphire", "os": "linux", "value": {"currency": "USD", "amount": "0.0806"}}
    rsps.get(f"{API}/billing/computeprices/", json=[price])
    assert client.compute_prices() == [price]


def test_observer_gets_endpoint_template_without_ids(rsps, client, events):
    rsps.get(f"{API}/jobs/cHDtgb/statuses/", json=page(STATUSES))
    client.job_statuses("cHDtgb")
    (event,) = events
    assert (event.method, event.endpoint, event.status, event.scope) == (
        "GET", "/jobs/{id}/statuses/", 200, "jobs-usage")
    assert event.duration_s >= 0


def test_repr_shows_base_url_only(client):
    assert repr(client) == f"RescaleClient({BASE!r})"
    assert TOKEN not in repr(vars(client))


def test_base_url_with_credentials_is_rejected():
    with pytest.raises(ValueError, match="credentials"):
        RescaleClient("https://user:pw@platform.rescale.com", Token(TOKEN))
