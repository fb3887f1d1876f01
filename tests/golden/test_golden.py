"""Golden pairs: each script in tests/golden/scripts/ and the exact output of `burst-agent translate`.

NAME.sh -> NAME.json (the job body on stdout, exit 0) or NAME.err (the one stderr line, exit 2).
NAME.request.json, when present, is passed as --request. Regenerate after a reviewed change with
BURST_GOLDEN_UPDATE=1 pytest tests/golden (then read the diff).
"""

import json
import os
from pathlib import Path

import pytest

from burst_agent.cli import main

HERE = Path(__file__).parent
SCRIPTS = sorted((HERE / "scripts").glob("*.sh"))
UPDATE = os.environ.get("BURST_GOLDEN_UPDATE") == "1"


def _run(script: Path, capsys) -> tuple[int, str, str]:
    argv = ["translate", str(script.relative_to(HERE)), "--config", str(HERE / "config.yaml"),
            "--coretypes", str(HERE / "coretypes.json")]
    request = script.with_suffix(".request.json")
    if request.exists():
        argv += ["--request", str(request)]
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(autouse=True)
def _in_golden_dir(monkeypatch):
    monkeypatch.chdir(HERE)  # file names in messages are relative: stable wherever pytest runs
    for name in list(os.environ):
        if name.startswith("BURST_AGENT__"):
            monkeypatch.delenv(name)


def test_there_are_golden_pairs_for_both_dialects():
    names = [s.name for s in SCRIPTS]
    assert sum(n.startswith("slurm_") for n in names) >= 10
    assert sum(n.startswith("pbs_") for n in names) >= 8
    assert sum(n.startswith("error_") for n in names) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_golden(script, capsys):
    rc, out, err = _run(script, capsys)
    expected = script.with_suffix(".err" if script.stem.startswith("error_") else ".json")
    if UPDATE:
        expected.write_text(err if script.stem.startswith("error_") else out, encoding="utf-8")
    if script.stem.startswith("error_"):
        assert (rc, out) == (2, "")
        assert err == expected.read_text(encoding="utf-8")
        assert len(err.splitlines()) == 1
    else:
        assert rc == 0, err
        assert json.loads(out) == json.loads(expected.read_text(encoding="utf-8"))
