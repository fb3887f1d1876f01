"""`burst-agent emulate` as a real process: ready line, serving, exit on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import requests


def test_spawned_process_serves_api(emulator_process):
    response = requests.get(
        f"{emulator_process.url}/api/v2/coretypes/",
        headers={"Authorization": f"Token {emulator_process.token}"},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["count"] == 10


def test_ready_line_then_clean_exit_on_sigterm(tmp_path):
    flags = f"emulate --port 0 --token tok-cli --data-dir {tmp_path} --step-seconds 0.05".split()
    process = subprocess.Popen(
        [sys.executable, "-m", "burst_agent.cli", *flags], stdout=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("emulator listening on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip()
        assert requests.get(f"{url}/api/v2/jobs/", timeout=10).status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert process.stdout.read() == ""  # exactly one line on stdout
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def _newest_status(api, auth, job_id):
    return requests.get(f"{api}jobs/{job_id}/statuses/", headers=auth, timeout=10).json()["results"][0][
        "status"
    ]


def test_sigterm_kills_running_job_processes(emulator_process, tmp_path):
    auth = {"Authorization": f"Token {emulator_process.token}"}
    api = f"{emulator_process.url}/api/v2/"
    marker = tmp_path / "still-running"
    hardware = {"coreType": "emerald", "coresPerSlot": 1}
    analysis = {
        "analysis": {"code": "user_included"},
        "command": f"sleep 2; touch {marker}",
        "hardware": hardware,
    }
    job_id = requests.post(
        f"{api}jobs/", headers=auth, json={"name": "long", "jobanalyses": [analysis]}
    ).json()["id"]
    requests.post(f"{api}jobs/{job_id}/submit/", headers=auth, timeout=10)
    deadline = time.monotonic() + 10
    while _newest_status(api, auth, job_id) != "Executing":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert emulator_process.stop() == 0
    time.sleep(2.5)
    assert not marker.exists()
