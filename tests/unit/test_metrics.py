"""burst_agent.metrics: event counters, scrape-time collectors, the client hook and the HTTP endpoint."""

from __future__ import annotations

import platform
from decimal import Decimal

import pytest
import requests
from jobkit import make_job, plan
from prometheus_client.parser import text_string_to_metric_families

from burst_agent import __version__
from burst_agent.config import RateLimits
from burst_agent.lifecycle import JobState
from burst_agent.metrics import FAILURE_CLASSES, Metrics, failure_class, serve
from burst_agent.record import Remote
from burst_agent.rescale.client import RequestEvent, RescaleClient
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.secret import Token
from burst_agent.store import JobStore


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_submitted_and_finished_counters(metrics):
    metrics.job_submitted()
    metrics.job_finished(JobState.DONE)
    metrics.job_finished("failed", "stage_out")
    metrics.job_finished(JobState.CANCELLED)
    assert value(metrics, "burst_agent_jobs_submitted_total") == 1
    assert value(metrics, "burst_agent_jobs_finished_total", state="failed") == 1
    assert value(metrics, "burst_agent_jobs_failed_total", reason="stage_out") == 1
    # a requested cancel is not a failure
    assert sum(value(metrics, "burst_agent_jobs_failed_total", reason=r) for r in FAILURE_CLASSES) == 1


def test_job_finished_refuses_a_non_final_state(metrics):
    with pytest.raises(ValueError, match="not a final state"):
        metrics.job_finished(JobState.RUNNING)


@pytest.mark.parametrize(
    ("reason", "failed_from", "expected"),
    [
        ("submit", None, "submit"),
        ("Staging-Out", None, "stage_out"),
        ("upload", None, "stage_in"),
        ("disk on fire", JobState.CREATED, "submit"),
        ("disk on fire", JobState.RUNNING, "remote"),
        ("job 01HXYZ exploded", None, "other"),
        (None, None, "other"),
    ],
)
def test_failure_reasons_map_into_a_fixed_set(reason, failed_from, expected):
    assert failure_class(reason, failed_from) == expected


def test_unknown_failure_text_never_becomes_a_label_value(metrics):
    metrics.job_finished(JobState.FAILED, "user alice's job 1234 broke")
    assert value(metrics, "burst_agent_jobs_failed_total", reason="other") == 1


def test_failed_from_state_classifies_an_opaque_reason(metrics):
    metrics.job_finished(JobState.FAILED, "HTTP 500", failed_from=JobState.STAGING_OUT)
    assert value(metrics, "burst_agent_jobs_failed_total", reason="stage_out") == 1


def test_observe_request_counts_codes_latency_and_429s(metrics):
    metrics.observe_request(RequestEvent("GET", "/jobs/", 200, 0.2, "job_reads", 0))
    metrics.observe_request(RequestEvent("POST", "/jobs/{id}/submit/", 429, 0.1, "submission", 0))
    metrics.observe_request(RequestEvent("GET", "/jobs/", None, 10.0, "job_reads", 1))
    assert value(metrics, "burst_agent_api_requests_total", endpoint="/jobs/", method="GET", code="200") == 1
    assert value(metrics, "burst_agent_api_requests_total", endpoint="/jobs/", method="GET", code="none") == 1
    assert value(metrics, "burst_agent_api_rate_limited_responses_total", scope="submission") == 1
    count = value(metrics, "burst_agent_api_request_duration_seconds_count", endpoint="/jobs/", method="GET")
    assert count == 2
    bucket = {"endpoint": "/jobs/", "method": "GET", "le": "0.25"}
    assert metrics.registry.get_sample_value("burst_agent_api_request_duration_seconds_bucket", bucket) == 1


def test_client_hook_sees_real_requests(metrics, emulator):
    client = RescaleClient(emulator.url, Token(emulator.token), on_request=metrics.observe_request)
    with client:
        client.list_coretypes()
    ok = value(metrics, "burst_agent_api_requests_total", endpoint="/coretypes/", method="GET", code="200")
    assert ok is not None and ok >= 1


def test_budgets_are_read_at_scrape_time(metrics):
    now = [0.0]
    limits = RateLimits(job_submission_per_hour=3600, job_submission_burst=10)
    budgets = RateBudgets(limits, clock=lambda: now[0])
    metrics.watch_budgets(budgets)
    metrics.watch_budget_waiting(lambda: {"job-submission": 7})
    assert value(metrics, "burst_agent_api_budget_remaining_requests", scope="job-submission") == 10
    budgets.acquire("job-submission")
    assert value(metrics, "burst_agent_api_budget_remaining_requests", scope="job-submission") == 9
    assert value(metrics, "burst_agent_api_budget_capacity_requests", scope="job-submission") == 10
    assert value(metrics, "burst_agent_api_budget_rate_per_hour", scope="job-submission") == 3060
    assert value(metrics, "burst_agent_api_budget_spent_requests_total", scope="job-submission") == 1
    assert value(metrics, "burst_agent_api_budget_waiting_jobs", scope="job-submission") == 7
    assert value(metrics, "burst_agent_api_budget_waiting_jobs", scope="jobs-usage") == 0


def test_jobs_by_state_come_from_the_store(metrics, tmp_path):
    with JobStore(tmp_path / "state.db", synchronous="NORMAL") as store:
        a = make_job(store, "a", JobState.TRANSLATED, partition="rescale")
        make_job(store, "b", JobState.TRANSLATED, partition="rescale")
        make_job(store, "c", JobState.TRANSLATED, job_plan=plan(scheduler="pbs"))
        make_job(store, "d")
        store.transition(a.id, JobState.FAILED, "test")
        metrics.watch_store(store)
        labels = {"scheduler": "slurm", "partition": "rescale"}
        assert value(metrics, "burst_agent_jobs", **labels, state="translated") == 1
        assert value(metrics, "burst_agent_jobs", **labels, state="failed") == 1
        assert value(metrics, "burst_agent_jobs", scheduler="pbs", partition="", state="translated") == 1
        assert value(metrics, "burst_agent_jobs", scheduler="plain", partition="", state="received") == 1


def test_unreadable_store_drops_samples_but_not_the_scrape(metrics, tmp_path):
    metrics.watch_store(tmp_path / "missing" / "state.db")
    metrics.watch_spool(lambda: 4)
    text = metrics.exposition().decode()
    assert "burst_agent_spool_backlog_entries 4.0" in text
    assert "burst_agent_jobs{" not in text


def test_transfers_and_bad_direction(metrics):
    metrics.transferred("upload", 1000, 2.0)
    metrics.transferred("upload", 500, 1.0)
    assert value(metrics, "burst_agent_transfer_bytes_total", direction="upload") == 1500
    assert value(metrics, "burst_agent_transfer_duration_seconds_count", direction="upload") == 2
    with pytest.raises(ValueError, match="direction"):
        metrics.transferred("sideways", 1, 1.0)


def test_remote_run_core_seconds_and_cost(metrics):
    metrics.remote_run(7200, "emerald", 8, "proj-a", Decimal("0.11"))
    assert value(metrics, "burst_agent_remote_core_seconds_total", coretype="emerald") == 57600
    cost = value(metrics, "burst_agent_estimated_cost_total", coretype="emerald", project="proj-a")
    assert cost == pytest.approx(1.76)
    assert value(metrics, "burst_agent_remote_run_seconds_count") == 1


def test_cost_and_core_seconds_carry_on_from_the_store_after_a_restart(metrics, tmp_path):
    with JobStore(tmp_path / "state.db", clock=lambda: 1000.0, synchronous="NORMAL") as store:
        ran = make_job(store, "a", JobState.RUNNING, job_plan=plan(price_per_core_hour=Decimal("0.5")))
        store.record_remote(ran.id, Remote(started_at=1000.0, finished_at=4600.0))  # 4 cores x 1 h
        make_job(store, "b", JobState.RUNNING)  # still running: counted when it ends
        assert metrics.seed_usage(store.jobs()) == 1
    assert value(metrics, "burst_agent_remote_core_seconds_total", coretype="emerald") == 14400
    assert value(metrics, "burst_agent_estimated_cost_total", coretype="emerald", project="") == 2.0
    assert value(metrics, "burst_agent_remote_run_seconds_count") == 0  # the histogram starts afresh


def test_job_record_helpers(metrics, tmp_path):
    with JobStore(tmp_path / "state.db", clock=lambda: 1000.0, synchronous="NORMAL") as store:
        job = make_job(store, "a", JobState.RUNNING,
                       job_plan=plan(cores_per_slot=4, slots=2, price_per_core_hour=Decimal("0.5")))
        job = store.record_remote(job.id, Remote(started_at=1600.0, finished_at=5200.0))
    metrics.job_started_remotely(job)
    metrics.job_ran(job)
    assert value(metrics, "burst_agent_queue_wait_seconds_sum") == 600
    assert value(metrics, "burst_agent_estimated_cost_total", coretype="emerald", project="") == 4.0


def test_per_user_label_only_when_configured():
    plain, per_user = Metrics(), Metrics(per_user_labels=True)
    plain.remote_run(3600, "emerald", 1, None, 1, user="alice")
    per_user.remote_run(3600, "emerald", 1, None, 1, user="alice")
    assert value(plain, "burst_agent_remote_core_seconds_total", coretype="emerald") == 3600
    assert value(per_user, "burst_agent_remote_core_seconds_total", coretype="emerald", user="alice") == 3600
    assert "alice" not in plain.exposition().decode()


def test_poll_timestamp_and_build_info(metrics):
    metrics.poll_succeeded(1_700_000_000.0)
    assert value(metrics, "burst_agent_last_successful_poll_timestamp_seconds") == 1_700_000_000.0
    families = {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}
    build = {"version": __version__, "python": platform.python_version()}
    assert value(metrics, "burst_agent_build_info", **build) == 1
    assert all(name.startswith("burst_agent_") for name in families)


def test_serve_on_loopback_and_stop(metrics):
    metrics.job_submitted()
    server = serve(metrics, port=0)
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        body = requests.get(url, timeout=10).text
    finally:
        server.stop()
    assert "burst_agent_jobs_submitted_total 1.0" in body
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
