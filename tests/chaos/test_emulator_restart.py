"""The remote side goes away while jobs run: an API outage (jobs keep running), and a full emulator restart
(state reloaded from its data dir). The agent backs off, recovers, and nothing is lost or doubled.

Long run: BURST_CHAOS_JOBS=200 BURST_CHAOS_OUTAGE_S=60 (see docs/reliability.md).
"""

from __future__ import annotations

import time

import pytest
import requests
from rig import wait_until
from workload import Run, audit, env_int, fast_rig, make_workload

from burst_agent.rescale.emulator import start_emulator

JOBS = env_int("BURST_CHAOS_JOBS", 12)
SEED = env_int("BURST_CHAOS_SEED", 20240611)
OUTAGE_S = env_int("BURST_CHAOS_OUTAGE_S", 15)
PAUSE = (2.0, 8.0)  # each job runs this long remotely, so the outage finds several of them running
TOKEN = "emulator-restart-token-0123456789"


def _remote_statuses(handle) -> dict[str, str]:
    with handle.store.lock:
        return {job.id: job.status for job in handle.store.jobs.values()}


def _some_running(run: Run) -> bool:
    return sum(r is not None and r.remote.status == "Executing" for r in run.records()) >= 2


FIRST_WAVE = JOBS - JOBS // 3  # the rest arrives during the outage: they cannot even stage in


@pytest.mark.timeout(240 + JOBS * 6 + OUTAGE_S * 4)
def test_api_outage_while_jobs_run_remotely(rig):
    run = Run(rig, make_workload(JOBS, SEED, pause=PAUSE))
    run.submit(FIRST_WAVE)
    rig.start()
    wait_until(lambda: _some_running(run), 60 + JOBS, "jobs executing remotely")
    before = _remote_statuses(rig.emulator)
    rig.emulator.go_offline(OUTAGE_S)
    run.submit(JOBS)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{rig.emulator.url}/api/v2/jobs/", timeout=5)
    wait_until(lambda: rig.emulator.online, OUTAGE_S + 10, "the API back online")
    during = _remote_statuses(rig.emulator)
    assert rig.proc.poll() is None, "the agent died during the outage"
    finished_offline = [i for i, s in during.items() if s == "Completed" and before.get(i) != "Completed"]
    assert finished_offline, "no remote job finished during the outage: the runner should not care"
    run.wait_all(timeout=120 + OUTAGE_S * 3)
    result = audit(run)
    assert result.problems == [], "\n".join(result.problems)
    assert rig.emulator.stats()["jobsCreated"] == JOBS
    assert "poll failed" in rig.logs() and "step failed; will retry" in rig.logs()


def test_outage_admin_endpoint_refuses_connections_then_recovers(emulator):
    url = f"{emulator.url}/_emulator/outage/"
    auth = {"Authorization": f"Token {emulator.token}"}
    assert requests.post(url, json={"seconds": 0}, headers=auth, timeout=5).status_code == 400
    assert requests.post(url, json={"seconds": 1.5}, timeout=5).status_code == 401
    assert requests.post(url, json={"seconds": 1.5}, headers=auth, timeout=5).status_code == 202
    wait_until(lambda: not emulator.online, 5, "the API offline")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{emulator.url}/_emulator/stats/", timeout=5)
    wait_until(lambda: emulator.online, 10, "the API back online")
    assert requests.get(f"{emulator.url}/_emulator/stats/", timeout=5).status_code == 200


@pytest.mark.timeout(240 + JOBS * 6 + OUTAGE_S * 4)
def test_emulator_restart_reloads_its_state_and_reruns_interrupted_jobs(tmp_path):
    data = tmp_path / "emulator"
    first = start_emulator(data, TOKEN, step_seconds=0.05, stop_grace_seconds=1.0, persist=True)
    port = int(first.url.rsplit(":", 1)[1])
    rig = fast_rig(tmp_path / "agent", first)
    second = None
    try:
        run = Run(rig, make_workload(JOBS, SEED, pause=PAUSE))
        run.submit(FIRST_WAVE)
        rig.start()
        wait_until(lambda: _some_running(run), 60 + JOBS, "jobs executing remotely")
        first.stop()  # running commands die with it; their jobs stay Executing in state.json
        interrupted = {i for i, s in _remote_statuses(first).items() if s == "Executing"}
        assert interrupted and (data / "state.json").exists()
        run.submit(JOBS)
        time.sleep(OUTAGE_S / 3)
        second = start_emulator(data, TOKEN, port=port, step_seconds=0.05, stop_grace_seconds=1.0,
                                persist=True)
        rig.emulator = second
        reloaded = _remote_statuses(second)
        assert interrupted <= set(reloaded) and reloaded.keys() == _remote_statuses(first).keys()
        run.wait_all(timeout=120 + OUTAGE_S * 3)
        result = audit(run)
        assert result.problems == [], "\n".join(result.problems)
        assert second.stats()["jobsCreated"] == JOBS  # the counter survived the restart too
        assert rig.proc.poll() is None
    finally:
        rig.stop()
        first.stop()
        if second is not None:
            second.stop()


def _api(handle, method: str, path: str, **kwargs):
    headers = {"Authorization": f"Token {handle.token}"}
    response = requests.request(method, f"{handle.url}/api/v2/{path}", headers=headers, timeout=10, **kwargs)
    assert response.ok, response.text
    return response


def test_persisted_state_survives_a_restart_byte_for_byte(tmp_path):
    data = tmp_path / "emulator"
    with start_emulator(data, TOKEN, step_seconds=0.02, persist=True) as first:
        upload = _api(first, "POST", "files/contents/", files={"file": ("in.txt", b"hello\n")}).json()
        body = {"name": "keep me [burst-x-1]", "jobanalyses": [{
            "analysis": {"code": "user_included", "version": "0"}, "command": "tr a-z A-Z < in.txt > out.txt",
            "hardware": {"coreType": "emerald", "coresPerSlot": 1}, "inputFiles": [{"id": upload["id"]}]}]}
        job_id = _api(first, "POST", "jobs/", json=body).json()["id"]
        _api(first, "POST", f"jobs/{job_id}/tags/", json={"name": "burst-x-1"})
        _api(first, "POST", f"jobs/{job_id}/submit/")
        wait_until(lambda: _remote_statuses(first)[job_id] == "Completed", 20, "the job completed")
        statuses = _api(first, "GET", f"jobs/{job_id}/statuses/").json()
        files = _api(first, "GET", f"jobs/{job_id}/files/").json()["results"]
        port = int(first.url.rsplit(":", 1)[1])  # download URLs carry the address
    with start_emulator(data, TOKEN, port=port, step_seconds=0.02, persist=True) as second:
        assert _api(second, "GET", f"jobs/{job_id}/statuses/").json() == statuses
        assert _api(second, "GET", f"jobs/{job_id}/files/").json()["results"] == files
        out = next(f for f in files if f["relativePath"] == "out.txt")
        assert _api(second, "GET", f"files/{out['id']}/contents/").content == b"HELLO\n"
        assert _api(second, "GET", "jobs/", params={"q": "burst-x-1"}).json()["count"] == 1
        assert second.stats()["jobsCreated"] == 1
    with start_emulator(data, TOKEN, step_seconds=0.02) as forgetful:  # persistence is opt-in
        assert forgetful.stats()["jobsCreated"] == 0
