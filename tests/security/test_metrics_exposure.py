"""The metrics endpoint shows counts, never identities: no token, no paths, no ids, bounded label values."""

from __future__ import annotations

import json
from collections import defaultdict

import requests
from prometheus_client.parser import text_string_to_metric_families
from rig import wait_until

MAX_VALUES_PER_LABEL = 40  # endpoints x methods x codes stay far below this; ids would not


def _scrape(rig) -> str:
    def port() -> int | None:
        lines = [line for line in rig.logs().splitlines() if '"metrics endpoint up"' in line]
        return json.loads(lines[0])["port"] if lines else None

    return requests.get(f"http://127.0.0.1:{wait_until(port, 20, 'metrics')}/metrics", timeout=10).text


def _label_values(text: str) -> dict[str, set[str]]:
    values: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key, value in sample.labels.items():
                values[f"{family.name}:{key}"].add(value)
    return values


def _run_jobs(rig, count: int, request: dict[str, str] | None = None) -> list:
    entries = []
    for n in range(count):
        script = "#!/bin/bash\necho ok > ok.txt\n" if n % 4 else "#!/bin/bash\nexit 3\n"
        extra = {k: v.format(n=n) for k, v in (request or {}).items()}
        entries.append(rig.submit(script, rig.workdir(f"m{n}"), job_id=str(73100 + n), **extra))
    return [rig.wait_terminal(entry, timeout=120) for entry in entries]


def _secrets_in_labels(rig, jobs, values: dict[str, set[str]]) -> list[str]:
    forbidden = {rig.emulator.token, str(rig.root), "/work/", "/tmp/"}
    for job in jobs:
        forbidden |= {job.entry, job.remote_job_id, job.id, job.reconcile_key, job.plan.inputs_from}
    return [f"{label}={value!r}" for label, found in values.items() for value in found
            if any(bad and bad in value for bad in forbidden)]


def test_many_jobs_leave_label_values_bounded_and_anonymous(rig):
    rig.start()
    jobs = _run_jobs(rig, 12)
    assert [j.result.exit_code for j in jobs].count(3) == 3
    text = _scrape(rig)
    assert rig.emulator.token not in text
    values = _label_values(text)
    assert values, "no labelled samples at all"
    assert not _secrets_in_labels(rig, jobs, values)
    assert "root" not in {v for found in values.values() for v in found}, "user names are opt-in labels"
    wide = {label: len(found) for label, found in values.items() if len(found) > MAX_VALUES_PER_LABEL}
    assert not wide, f"label values grow with jobs: {wide}"


def test_user_chosen_request_fields_cannot_mint_label_values(rig):
    """A user may write request.json directly into the spool: nothing in it may become a label value."""
    rig.start()
    _run_jobs(rig, 12, {"partition": "part-{n}", "account": "acct-{n}", "job_name": "name-{n}"})
    values = _label_values(_scrape(rig))
    minted = {label: sorted(v for v in found if v.split("-")[0] in ("part", "acct", "name"))
              for label, found in values.items()}
    minted = {label: found for label, found in minted.items() if found}
    assert not minted, (
        f"request.json fields written by the user became label values (one series per job): {minted}. "
        f"Map them to a bounded set (the partitions/projects the admin configured, else 'other')"
    )
