"""Emulator jobs: statuses, real execution in a sandbox, outputs, archives, stop, listing and search."""

from __future__ import annotations

import io
import time
import zipfile

import requests


def _outputs(api, auth, job_id, **params):
    return requests.get(f"{api}jobs/{job_id}/files/", headers=auth, params=params, timeout=10).json()


def test_failing_command_completes_with_outputs(api, auth, run_job, wait_status):
    job_id = run_job("echo hi > out.txt; exit 3")
    assert wait_status(job_id)["statusReason"] == "Completed successfully"
    files = {f["relativePath"]: f for f in _outputs(api, auth, job_id)["results"]}
    assert set(files) == {"out.txt", "process_output.log"}
    assert requests.get(files["out.txt"]["downloadUrl"], headers=auth, timeout=10).content == b"hi\n"
    assert files["out.txt"]["typeId"] == 5 and len(files["out.txt"]["md5"]) == 32


def test_statuses_advance_in_documented_order(api, auth, run_job, wait_status):
    job_id = run_job("true")
    wait_status(job_id)
    history = requests.get(f"{api}jobs/{job_id}/statuses/", headers=auth, timeout=10).json()["results"]
    assert [s["status"] for s in reversed(history)] == [
        "Pending",
        "Queued",
        "Started",
        "Validated",
        "Executing",
        "Completed",
    ]


def _cluster_history(api, auth, job_id):
    response = requests.get(f"{api}jobs/{job_id}/cluster_statuses/", headers=auth, timeout=10)
    return response.status_code, [s["status"] for s in reversed(response.json().get("results", []))]


def test_cluster_statuses_404_until_cluster_exists(api, auth, job_body):
    created = requests.post(f"{api}jobs/", headers=auth, json=job_body(), timeout=10).json()
    assert _cluster_history(api, auth, created["id"])[0] == 404


def test_cluster_stops_after_job_completes(api, auth, run_job, wait_status):
    job_id = run_job("true")
    wait_status(job_id)
    deadline = time.monotonic() + 10
    while (history := _cluster_history(api, auth, job_id)[1])[-1] != "Stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert history == ["Not Started", "Starting", "Started", "Stop Requested", "Stopping", "Stopped"]


def test_zip_input_is_extracted_in_sandbox(api, auth, upload, run_job, wait_status):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("case/input.dat", "42\n")
    file_id = upload("case.zip", buffer.getvalue())["id"]
    job_id = run_job("cat case/input.dat > answer.txt", inputFiles=[{"id": file_id}])
    wait_status(job_id)
    files = {f["relativePath"]: f for f in _outputs(api, auth, job_id)["results"]}
    assert "case/input.dat" not in files and "case.zip" not in files  # unchanged inputs are not outputs
    assert requests.get(files["answer.txt"]["downloadUrl"], headers=auth, timeout=10).content == b"42\n"


def test_output_search_filter(api, auth, run_job, wait_status):
    job_id = run_job("mkdir -p r; echo 1 > r/residuals.csv; echo 2 > other.txt")
    wait_status(job_id)
    page = _outputs(api, auth, job_id, search="residuals")
    assert [f["relativePath"] for f in page["results"]] == ["r/residuals.csv"]


def test_stop_kills_long_running_job(api, auth, run_job, wait_status):
    job_id = run_job("echo started; sleep 600")
    wait_status(job_id, "Executing")
    assert requests.post(f"{api}jobs/{job_id}/stop/", headers=auth, timeout=10).status_code == 202
    final = wait_status(job_id, timeout=15)
    assert final["statusReason"] == "Job stopped by user"
    assert "process_output.log" in {f["name"] for f in _outputs(api, auth, job_id)["results"]}


def test_shutdown_discards_outputs(api, auth, run_job, wait_status):
    job_id = run_job("echo x > out.txt; sleep 600")
    wait_status(job_id, "Executing")
    assert requests.post(f"{api}jobs/{job_id}/shutdown/", headers=auth, timeout=10).status_code == 202
    wait_status(job_id, timeout=15)
    assert _outputs(api, auth, job_id)["count"] == 0


def test_tail_serves_log_while_running(api, auth, run_job, wait_status):
    job_id = run_job("echo line-one; sleep 600")
    wait_status(job_id, "Executing")
    url = f"{api}jobs/{job_id}/runs/1/tail/process_output.log/"
    deadline = time.monotonic() + 10
    while (lines := requests.get(url, headers=auth, params={"lines": 5}, timeout=10).json()["lines"]) == []:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert lines == ["line-one"]
    requests.post(f"{api}jobs/{job_id}/force_stop/", headers=auth, timeout=10)


def test_list_not_completed_and_q_search_by_tag_and_name(api, auth, job_body, run_job, wait_status):
    done = run_job("true")
    wait_status(done)
    active = requests.post(f"{api}jobs/", headers=auth, json={**job_body(), "name": "alpha run"}, timeout=10)
    active_id = active.json()["id"]
    requests.post(f"{api}jobs/{active_id}/tags/", headers=auth, json={"name": "burst - 7"}, timeout=10)
    listed = requests.get(f"{api}jobs/", headers=auth, params={"state": "not_completed"}, timeout=10).json()
    assert [j["id"] for j in listed["results"]] == [active_id]
    assert set(listed["results"][0]["jobStatus"]) == {"content", "labelClass", "useLabel"}
    for q in ("#burst7", "alpha"):
        found = requests.get(f"{api}jobs/", headers=auth, params={"q": q}, timeout=10).json()
        assert [j["id"] for j in found["results"]] == [active_id]


def test_command_env_is_sanitized(emulator, api, auth, run_job, wait_status, monkeypatch):
    monkeypatch.setenv("RESCALE_API_TOKEN", emulator.token)
    job_id = run_job("env > env.txt")
    wait_status(job_id)
    env_file = next(f for f in _outputs(api, auth, job_id)["results"] if f["name"] == "env.txt")
    text = requests.get(env_file["downloadUrl"], headers=auth, timeout=10).text
    assert emulator.token not in text and "RESCALE_JOB_ID=" in text
