"""Emulator HTTP rules: token auth, trailing slash, pagination envelope, request log, stats."""

from __future__ import annotations

import json

import requests

from burst_agent.rescale.emulator import start_emulator


def test_missing_or_wrong_token_is_401_with_detail(api):
    missing = requests.get(f"{api}jobs/", timeout=10)
    wrong = requests.get(f"{api}jobs/", headers={"Authorization": "Token nope"}, timeout=10)
    bearer = requests.get(f"{api}jobs/", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert [missing.status_code, wrong.status_code, bearer.status_code] == [401, 401, 401]
    assert "detail" in missing.json() and "detail" in wrong.json()


def test_path_without_trailing_slash_is_404(api, auth):
    response = requests.get(f"{api}jobs", headers=auth, timeout=10, allow_redirects=False)
    assert response.status_code == 404
    assert "trailing slash" in response.json()["detail"]


def test_unknown_path_is_404_json(api, auth):
    response = requests.get(f"{api}nothing/here/", headers=auth, timeout=10)
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_pagination_envelope_walks_all_pages(api, auth):
    seen, url, pages = [], f"{api}coretypes/?page_size=3", 0
    while url:
        page = requests.get(url, headers=auth, timeout=10).json()
        assert set(page) == {"count", "next", "previous", "results"}
        assert (page["previous"] is None) == (pages == 0)
        seen += [c["code"] for c in page["results"]]
        url, pages = page["next"], pages + 1
    assert pages == 4 and len(seen) == page["count"] == len(set(seen)) == 10


def test_next_link_is_absolute_on_same_host(emulator, api, auth):
    page = requests.get(f"{api}coretypes/", headers=auth, params={"page_size": 2}, timeout=10).json()
    assert page["next"].startswith(f"{emulator.url}/api/v2/coretypes/?")
    assert "page=2" in page["next"] and "page_size=2" in page["next"]


def test_page_out_of_range_is_404(api, auth):
    response = requests.get(f"{api}coretypes/", headers=auth, params={"page": 99}, timeout=10)
    assert response.status_code == 404 and response.json()["detail"] == "Invalid page."


def test_analyses_include_user_included_openfoam_lammps(api, auth):
    results = requests.get(f"{api}analyses/", headers=auth, timeout=10).json()["results"]
    by_code = {a["code"]: a for a in results}
    assert {"user_included", "openfoam", "lammps"} <= set(by_code)
    assert by_code["user_included"]["versions"][0]["version"] == "0"
    assert "emerald" in by_code["openfoam"]["versions"][0]["allowedCoreTypes"]


def test_request_log_has_one_json_line_per_request(tmp_path):
    log = tmp_path / "requests.jsonl"
    with start_emulator(tmp_path / "data", "tok-abc", request_log=log) as emu:
        requests.get(f"{emu.url}/api/v2/jobs/", timeout=10)
        requests.get(
            f"{emu.url}/api/v2/jobs/",
            headers={"Authorization": "Token tok-abc"},
            params={"state": "not_completed"},
            timeout=10,
        )
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [("GET", "/api/v2/jobs/", 401)] * 1 + [
        ("GET", "/api/v2/jobs/", 200)
    ]
    assert lines[1]["query"] == "state=not_completed" and lines[1]["bytes"] > 0
    assert {"time", "duration_ms"} <= set(lines[0]) and "tok-abc" not in log.read_text()


def test_stats_count_requests_by_template_and_jobs(emulator, api, auth, job_body):
    for _ in range(2):
        requests.post(f"{api}jobs/", headers=auth, json=job_body(), timeout=10)
    stats = requests.get(f"{emulator.url}/_emulator/stats/", timeout=10).json()
    assert stats["requests"]["POST /api/v2/jobs/"] == 2
    assert stats["jobsCreated"] == 2 and stats["jobsByStatus"] == {"Not submitted": 2}
