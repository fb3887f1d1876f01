"""Job create validation: 400 with field paths mapped to messages, per the doc's Create a Job rules."""

from __future__ import annotations

import json

import pytest
import requests

from burst_agent.rescale.emulator import start_emulator


def _errors(api, auth, body):
    response = requests.post(f"{api}jobs/", headers=auth, json=body, timeout=10)
    assert response.status_code == 400, response.text
    return response.json()


def test_valid_body_creates_job_without_status(api, auth, job_body):
    response = requests.post(f"{api}jobs/", headers=auth, json=job_body(walltime=2), timeout=10)
    assert response.status_code == 201
    job = requests.get(f"{api}jobs/{response.json()['id']}/", headers=auth, timeout=10).json()
    assert job["jobanalyses"][0]["hardware"]["walltime"] == 2
    assert "jobStatus" not in job and "status" not in job


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"code": "nosuchsoftware"}, "jobanalyses[0].analysis.code"),
        ({"code": "openfoam", "version": "9.9.9"}, "jobanalyses[0].analysis.version"),
    ],
)
def test_unknown_analysis_or_version(api, auth, job_body, change, field):
    body = job_body()
    body["jobanalyses"][0]["analysis"] = change
    assert field in _errors(api, auth, body)


@pytest.mark.parametrize(
    ("hardware", "field"),
    [
        ({"coreType": "unobtainium"}, "coreType"),
        ({"coreType": "marble"}, "coreType"),  # deprecated in the catalogue
        ({"coresPerSlot": 3}, "coresPerSlot"),  # emerald sizes are 1, 2, 4, 8, 16, 36
        ({"coresPerSlot": "4"}, "coresPerSlot"),
        ({"slots": 0}, "slots"),
        ({"slots": 1.5}, "slots"),
        ({"walltime": 0}, "walltime"),
        ({"walltime": 3600}, "walltime"),  # one hour sent in seconds
        ({"walltime": "2"}, "walltime"),
    ],
)
def test_bad_hardware(api, auth, job_body, hardware, field):
    errors = _errors(api, auth, job_body(**hardware))
    assert list(errors) == [f"jobanalyses[0].hardware.{field}"]
    assert all(isinstance(m, str) for m in errors[f"jobanalyses[0].hardware.{field}"])


@pytest.mark.parametrize("command", ["", "   ", None, 42])
def test_missing_or_empty_command(api, auth, job_body, command):
    body = job_body()
    body["jobanalyses"][0]["command"] = command
    assert "jobanalyses[0].command" in _errors(api, auth, body)


def test_unknown_input_file_id(api, auth, job_body):
    body = job_body()
    body["jobanalyses"][0]["inputFiles"] = [{"id": "doesNotExist"}]
    assert "jobanalyses[0].inputFiles[0].id" in _errors(api, auth, body)


def test_missing_name_and_analyses_and_wrong_types(api, auth):
    errors = _errors(api, auth, {"jobanalyses": "not a list"})
    assert set(errors) == {"name", "jobanalyses"}
    assert "non_field_errors" in _errors(api, auth, [1, 2])


def test_tags_in_create_body_are_ignored(api, auth, job_body):
    created = requests.post(f"{api}jobs/", headers=auth, json={**job_body(), "tags": ["x"]}, timeout=10)
    tags = requests.get(f"{api}jobs/{created.json()['id']}/tags/", headers=auth, timeout=10)
    assert created.status_code == 201 and tags.json() == []


def test_coretypes_file_option_replaces_catalogue(tmp_path, job_body):
    custom = [{"code": "tiny", "name": "Tiny", "cores": [2], "memory": 1000, "isDeprecated": False}]
    (tmp_path / "ct.json").write_text(json.dumps(custom))
    with start_emulator(tmp_path / "d", "tok-ct", coretypes_file=tmp_path / "ct.json") as emu:
        headers = {"Authorization": "Token tok-ct"}
        listed = requests.get(f"{emu.url}/api/v2/coretypes/", headers=headers, timeout=10).json()
        ok = requests.post(
            f"{emu.url}/api/v2/jobs/",
            headers=headers,
            json=job_body(coreType="tiny", coresPerSlot=2),
            timeout=10,
        )
        bad = requests.post(f"{emu.url}/api/v2/jobs/", headers=headers, json=job_body(), timeout=10)
    assert [c["code"] for c in listed["results"]] == ["tiny"]
    assert ok.status_code == 201 and "jobanalyses[0].hardware.coreType" in bad.json()
