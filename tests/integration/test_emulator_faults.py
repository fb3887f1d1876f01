"""Emulator fault injection: 429 with Retry-After, 500, dropped connections, truncated downloads; a WAN."""

from __future__ import annotations

import time

import pytest
import requests

from burst_agent.rescale.emulator import start_emulator


def test_429_with_retry_after_at_probability_one(tmp_path):
    with start_emulator(tmp_path, "tok-429", fault_429=1.0, retry_after=7, seed=1) as emu:
        response = requests.get(
            f"{emu.url}/api/v2/jobs/", headers={"Authorization": "Token tok-429"}, timeout=10
        )
        stats = requests.get(f"{emu.url}/_emulator/stats/", timeout=10).json()
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert "detail" in response.json() and stats["faultsInjected"] == {"fault_429": 1}


def test_runtime_fault_endpoint_sets_500_scoped_by_method(emulator, api, auth):
    settings = {"fault_500": 1.0, "methods": ["POST"]}
    assert requests.post(f"{emulator.url}/_emulator/faults/", headers=auth, json=settings, timeout=10).ok
    assert requests.post(f"{api}jobs/", headers=auth, json={}, timeout=10).status_code == 500
    assert requests.get(f"{api}jobs/", headers=auth, timeout=10).status_code == 200


def test_fault_endpoint_rejects_bad_settings(emulator, auth):
    response = requests.post(
        f"{emulator.url}/_emulator/faults/", headers=auth, json={"fault_500": 2}, timeout=10
    )
    assert response.status_code == 400


def test_path_pattern_scopes_faults_to_whole_path_matches(emulator, api, auth):
    emulator.set_faults(fault_500=1.0, path_pattern="/api/v2/jobs/")
    assert requests.get(f"{api}jobs/", headers=auth, timeout=10).status_code == 500
    assert requests.get(f"{api}jobs/nojob/statuses/", headers=auth, timeout=10).status_code == 404


def test_fault_endpoint_rejects_a_bad_path_pattern(emulator, auth):
    response = requests.post(
        f"{emulator.url}/_emulator/faults/", headers=auth, json={"path_pattern": "(["}, timeout=10
    )
    assert response.status_code == 400 and "path_pattern" in response.text


def test_dropped_connection(emulator, api, auth):
    emulator.set_faults(fault_drop=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{api}jobs/", headers=auth, timeout=10)


def test_truncated_download_delivers_fewer_bytes(emulator, auth, upload):
    meta = upload("t.bin", b"z" * 100_000)
    emulator.set_faults(fault_truncate=1.0)
    received = b""
    response = requests.get(meta["downloadUrl"], headers=auth, stream=True, timeout=10)
    assert int(response.headers["Content-Length"]) == 100_000
    with pytest.raises(requests.exceptions.ChunkedEncodingError), response:
        for chunk in response.iter_content(8192):
            received += chunk
    assert 0 < len(received) < 100_000


def test_same_seed_gives_same_fault_pattern(tmp_path):
    def pattern(seed):
        with start_emulator(tmp_path / str(seed), "tok-s", fault_500=0.5, seed=42) as emu:
            return [
                requests.get(
                    f"{emu.url}/api/v2/coretypes/", headers={"Authorization": "Token tok-s"}, timeout=10
                ).status_code
                for _ in range(12)
            ]

    first = pattern(1)
    assert first == pattern(2) and {200, 500} == set(first)


def test_a_bandwidth_cap_paces_each_download(emulator, auth, upload):
    meta = upload("w.bin", b"w" * 2_000_000)
    emulator.set_faults(bandwidth_bytes_per_s=10_000_000)
    started = time.monotonic()
    assert len(requests.get(meta["downloadUrl"], headers=auth, timeout=10).content) == 2_000_000
    assert time.monotonic() - started >= 0.18


@pytest.mark.parametrize(("mode", "status", "accepts"),
                         [("honour", 206, "bytes"), ("ignore", 200, "bytes"), ("none", 200, "none")])
def test_ranges_can_be_refused(emulator, auth, upload, mode, status, accepts):
    meta = upload("r.bin", b"0123456789")
    emulator.set_faults(ranges=mode)
    got = requests.get(meta["downloadUrl"], headers={**auth, "Range": "bytes=2-5"}, timeout=10)
    head = requests.head(meta["downloadUrl"], headers=auth, timeout=10)
    assert (got.status_code, head.headers["Accept-Ranges"]) == (status, accepts)
    assert head.headers["Content-Length"] == "10" and head.content == b""
