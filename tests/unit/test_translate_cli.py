"""`burst-agent translate`: stdout/stderr/exit codes, and the catalogue fetched from the API and cached."""

import json
from pathlib import Path

from burst_agent.cli import main

GOLDEN = Path(__file__).parents[1] / "golden"


def _script(tmp_path, text):
    path = tmp_path / "job.sh"
    path.write_text(text)
    return path


def test_prints_the_body_and_warnings_go_to_stderr(tmp_path, capsys):
    script = _script(tmp_path, "#!/bin/bash\n#SBATCH -n 2 --mail-type=ALL\n./x\n")
    rc = main(["translate", str(script), "--coretypes", str(GOLDEN / "coretypes.json")])
    out, err = capsys.readouterr()
    assert rc == 0 and json.loads(out)["jobanalyses"][0]["hardware"]["slots"] >= 1
    assert (
        err
        == f"{script}:2: #SBATCH -n 2 --mail-type=ALL: warning: ignored: mail is not sent for cloud jobs\n"
    )


def test_untranslatable_exits_2_with_one_line(tmp_path, capsys):
    script = _script(tmp_path, "#!/bin/bash\n#PBS -l walltime=never\n./x\n")
    rc = main(["translate", str(script), "--scheduler", "pbs", "--coretypes", str(GOLDEN / "coretypes.json")])
    out, err = capsys.readouterr()
    assert (rc, out) == (2, "")
    assert err.startswith(f"{script}:2: #PBS -l walltime=never: invalid time") and err.count("\n") == 1


def test_plain_list_and_paginated_coretypes_files_and_a_request_file(tmp_path, capsys):
    items = json.loads((GOLDEN / "coretypes.json").read_text())
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"count": len(items), "next": None, "previous": None, "results": items}))
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"nodes": 3, "job_id": "99"}))
    script = _script(tmp_path, "#!/bin/bash\n#SBATCH -N 1\n./x\n")
    assert main(["translate", str(script), "--coretypes", str(page), "--request", str(request)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["jobanalyses"][0]["hardware"]["slots"] == 3
    assert "SLURM_JOB_ID=99 " in body["jobanalyses"][0]["command"]


def test_without_coretypes_the_api_is_asked_and_cached(tmp_path, capsys, monkeypatch, emulator):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("RESCALE_API_TOKEN", emulator.token)
    monkeypatch.setenv("BURST_AGENT__API__BASE_URL", emulator.url)
    script = _script(tmp_path, "#!/bin/bash\n#SBATCH -n 1\n./x\n")
    assert main(["translate", str(script)]) == 0
    first = capsys.readouterr().out
    assert list((tmp_path / "cache" / "burst-agent").glob("coretypes-*.json"))
    emulator.stop()  # the second run must come from the cache
    assert main(["translate", str(script)]) == 0
    assert capsys.readouterr().out == first
