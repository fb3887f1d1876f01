"""RescaleClient against the emulator over real HTTP: files, resume, jobs, errors, paging, tags, prices."""

from __future__ import annotations

import hashlib
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from burst_agent.config import RateLimits
from burst_agent.rescale import transfer
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.errors import AuthenticationError, TransientError, ValidationError
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token
from burst_agent.staging.bundle import send


def _client(emulator, token: str | None = None, retries: int = 2) -> RescaleClient:
    retry = RetryPolicy(max_retries=retries, sleep=lambda s: None)
    budgets = RateBudgets(RateLimits(enabled=False))
    return RescaleClient(emulator.url, Token(token or emulator.token), retry=retry, budgets=budgets)


@pytest.fixture
def client(emulator) -> RescaleClient:
    with _client(emulator) as c:
        yield c


def _body(command: str = "echo hi", **hardware: Any) -> dict[str, Any]:
    hw = {"coreType": "emerald", "coresPerSlot": 1, **hardware}
    analysis = {"analysis": {"code": "user_included", "version": "0"}, "command": command, "hardware": hw}
    return {"name": "client test", "jobanalyses": [analysis]}


def _wait(client: RescaleClient, job_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = client.job_statuses(job_id)
        if newest and newest[0]["status"] == status:
            return newest[0]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {status!r}")


def _start(client: RescaleClient, command: str) -> str:
    job_id = client.create_job(_body(command))["id"]
    client.submit_job(job_id)
    return job_id


def _uploaded(client: RescaleClient, tmp_path: Path, size: int) -> tuple[dict[str, Any], bytes]:
    data = os.urandom(size)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    return client.upload_file(src), data


def test_upload_download_roundtrip_md5(client, tmp_path):
    meta, data = _uploaded(client, tmp_path, 8 * 1024 * 1024 + 17)
    assert meta["md5"] == hashlib.md5(data).hexdigest() and meta["decryptedSize"] == len(data)
    result = client.download_file(meta["id"], tmp_path / "out.bin", expected_md5=meta["md5"],
                                  expected_size=len(data))
    assert (tmp_path / "out.bin").read_bytes() == data
    assert (result.md5, result.size, result.resumed_from) == (meta["md5"], len(data), 0)


def test_upload_from_an_open_reader_sends_exactly_its_bytes(client, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(300_000))
    with src.open("rb") as handle:
        file_id, sent = send(handle, 200_000, "part.bin",
                             lambda reader, name: client.upload_file(reader, name=name))
    data = src.read_bytes()[:200_000]  # bytes past the size taken at open are not sent
    assert sent.md5.hexdigest() == hashlib.md5(data).hexdigest()
    assert client.get_file(file_id)["decryptedSize"] == 200_000


def test_truncated_download_is_resumed_with_range(emulator, tmp_path):
    meta, data = _uploaded(_client(emulator), tmp_path, 4 * 1024 * 1024)
    emulator.set_faults(fault_truncate=1.0)
    with pytest.raises(TransientError, match="broke off"):
        _client(emulator, retries=0).download_file(meta["id"], tmp_path / "out.bin")
    assert (tmp_path / "out.bin.partial").stat().st_size > 0
    emulator.set_faults(fault_truncate=0.0)
    result = _client(emulator).download_file(meta["id"], tmp_path / "out.bin", expected_md5=meta["md5"])
    assert result.resumed_from > 0 and result.md5 == meta["md5"]
    assert (tmp_path / "out.bin").read_bytes() == data


def test_failing_job_completes_and_outputs_download(client, tmp_path):
    job_id = _start(client, "echo hi > out.txt; exit 3")
    _wait(client, job_id, "Completed")
    outputs = {f["relativePath"]: f for f in client.iter_job_files(job_id)}
    out = outputs["out.txt"]
    client.download_file(out["id"], tmp_path / "out.txt", expected_md5=out["md5"])
    assert (tmp_path / "out.txt").read_text() == "hi\n"


@pytest.mark.parametrize(
    ("hardware", "field"),
    [({"coresPerSlot": 3}, "coresPerSlot"), ({"coreType": "unobtainium"}, "coreType")],
)
def test_validation_errors_carry_field_details(client, hardware, field):
    with pytest.raises(ValidationError) as info:
        client.create_job(_body(**hardware))
    assert info.value.status == 400
    assert list(info.value.field_errors) == [f"jobanalyses[0].hardware.{field}"]
    assert field in str(info.value)


def test_bad_token_is_authentication_error_without_the_token(emulator):
    bad = "not-the-right-token-4242"
    with pytest.raises(AuthenticationError) as info:
        _client(emulator, token=bad).list_coretypes()
    assert info.value.status == 401
    assert bad not in str(info.value) and bad not in repr(info.value)
    assert emulator.token not in str(info.value)


def test_iter_jobs_follows_pages(client):
    created = {client.create_job(_body())["id"] for _ in range(5)}
    listed = [job["id"] for job in client.iter_jobs(page_size=2)]
    assert set(listed) == created and len(listed) == 5


def test_not_completed_listing_shows_job_status(client):
    job_id = _start(client, "sleep 30")
    _wait(client, job_id, "Executing")
    active = {job["id"]: job for job in client.iter_jobs(state="not_completed")}
    assert active[job_id]["jobStatus"]["content"] == "Executing"
    client.shutdown_job(job_id)


def test_cluster_statuses_none_before_cluster_then_list(client):
    job_id = client.create_job(_body())["id"]
    assert client.cluster_statuses(job_id) is None
    client.submit_job(job_id)
    _wait(client, job_id, "Completed")
    statuses = client.cluster_statuses(job_id)
    assert statuses and all("status" in s for s in statuses)


def test_tags_add_list_remove(client):
    job_id = client.create_job(_body())["id"]
    client.add_tag(job_id, "burst-agent")
    client.add_tag(job_id, "slurm-42")
    assert sorted(client.list_tags(job_id)) == ["burst-agent", "slurm-42"]
    client.remove_tag(job_id, "slurm-42")
    assert client.list_tags(job_id) == ["burst-agent"]


def test_stop_running_job(client):
    job_id = _start(client, "sleep 30")
    _wait(client, job_id, "Executing")
    client.stop_job(job_id)
    final = _wait(client, job_id, "Completed")
    assert final["statusReason"] == "Job stopped by user"


def test_compute_prices_follow_the_catalogue(client):
    coretypes = {c["code"]: c for c in client.list_coretypes()}
    prices = client.compute_prices()
    assert {p["coreType"] for p in prices} == set(coretypes)
    on_demand = {p["coreType"]: p for p in prices if p["planType"] == "2021-on-demand"}
    emerald = on_demand["emerald"]
    assert Decimal(emerald["value"]["amount"]) == Decimal(str(coretypes["emerald"]["price"]))
    assert emerald["os"] == "linux" and emerald["value"]["currency"] == "USD" and emerald["isActive"]
    assert on_demand["marble"]["isActive"] is False  # deprecated coretype


def test_compute_prices_are_paginated(emulator, client):
    page = client.request("GET", "/billing/computeprices/", params={"page_size": 3}).json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert len(page["results"]) == 3 and page["count"] > 3 and page["next"].startswith(emulator.url)


def test_write_behind_path_keeps_the_download_intact(client, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "WRITE_BEHIND", 1 << 20)  # exercise it on a small file
    meta, data = _uploaded(client, tmp_path, 5 * 1024 * 1024 + 3)
    result = client.download_file(meta["id"], tmp_path / "out.bin", expected_md5=meta["md5"])
    assert result.md5 == meta["md5"] and (tmp_path / "out.bin").read_bytes() == data
