"""Emulator deletes as the API document has them: one job or many, with or without their input files."""

from __future__ import annotations

import requests


def _status(api, auth, method: str, path: str, **kw) -> int:
    return requests.request(method, f"{api}{path}", headers=auth, timeout=10, **kw).status_code


def test_delete_job_with_its_input_files(api, auth, upload, run_job, wait_status):
    meta = upload("in.txt", b"data")
    job_id = run_job("cat in.txt", inputFiles=[{"id": meta["id"]}])
    wait_status(job_id)
    assert _status(api, auth, "DELETE", f"jobs/{job_id}/", json={"deleteInputFiles": True}) == 204
    assert _status(api, auth, "GET", f"jobs/{job_id}/statuses/") == 404
    assert _status(api, auth, "GET", f"files/{meta['id']}/") == 404


def test_delete_many_jobs_is_all_or_nothing_while_one_runs(api, auth, run_job, wait_status):
    done, running = run_job("true"), run_job("sleep 30")
    wait_status(done)
    wait_status(running, "Executing")
    assert _status(api, auth, "DELETE", "jobs/", json={"jobIds": [done, running]}) == 400
    assert _status(api, auth, "GET", f"jobs/{done}/") == 200
    assert _status(api, auth, "POST", f"jobs/{running}/stop/") == 202
    wait_status(running)
    assert _status(api, auth, "DELETE", "jobs/", json={"jobIds": [done, running]}) == 204
    assert [_status(api, auth, "GET", f"jobs/{j}/") for j in (done, running)] == [404, 404]
