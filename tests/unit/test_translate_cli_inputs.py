"""`burst-agent translate` on a FIFO, a device, a huge or deeply nested file: one clear line, never a hang."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from burst_agent.cli import main

CORETYPES = str(Path(__file__).parents[1] / "golden" / "coretypes.json")
DEEP = "[" * 100_000 + "]" * 100_000
pytestmark = pytest.mark.timeout(30)  # a hang (a FIFO opened for reading) fails here


@pytest.fixture
def translate(capsys: pytest.CaptureFixture[str]):
    """`burst-agent translate ARGS` in this process (a subprocess each cost half a second): rc, out, err."""
    def run(*args: str) -> SimpleNamespace:
        try:
            returncode = main(["translate", *args])
        except SystemExit as exc:  # argparse's way out
            returncode = exc.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=returncode, stdout=out, stderr=err)
    return run


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "job.sh"
    path.write_text("#!/bin/bash\n#SBATCH -n 2\n./x\n")
    return path


def test_a_fifo_or_device_as_the_script_is_refused_at_once(tmp_path: Path, translate) -> None:
    fifo = tmp_path / "pipe.sh"
    os.mkfifo(fifo)
    kinds = {fifo: "a named pipe", Path("/dev/zero"): "a character device", tmp_path: "a directory"}
    for path, kind in kinds.items():
        done = translate(str(path), "--coretypes", CORETYPES)
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert done.stderr == f"{path}: cannot read: {kind}, not a regular file\n"


def test_a_fifo_as_request_or_coretypes_is_refused_at_once(tmp_path: Path, script: Path, translate) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    done = translate(str(script), "--coretypes", CORETYPES, "--request", str(fifo))
    assert done.returncode == 2
    assert done.stderr == f"{script}: request file {fifo}: cannot read: a named pipe, not a regular file\n"
    done = translate(str(script), "--coretypes", str(fifo))
    assert done.returncode == 1 and "a named pipe, not a regular file" in done.stderr


@pytest.mark.parametrize(("text", "problem"), [
    (DEEP, "not valid JSON: nested too deeply"), ('{"nodes": ' + "1" * 5000 + "}", "digits is too large"),
    (json.dumps({"job_name": "x" * 300_000}), "larger than the 262144-byte limit"),
])
def test_a_bad_request_file_is_one_line_with_exit_2(tmp_path: Path, script: Path, text: str, problem: str,
                                                 translate):
    request = tmp_path / "req.json"
    request.write_text(text)
    done = translate(str(script), "--coretypes", CORETYPES, "--request", str(request))
    assert done.returncode == 2 and problem in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_deep_coretypes_and_an_oversized_script_are_clear_errors(tmp_path: Path, script: Path, translate):
    deep = tmp_path / "coretypes.json"
    deep.write_text(DEEP)
    done = translate(str(script), "--coretypes", str(deep))
    assert done.returncode == 1
    assert done.stderr == f"burst-agent translate: {deep}: not valid JSON: nested too deeply\n"
    script.write_text("#!/bin/bash\n" + "echo x\n" * 200_000)
    done = translate(str(script), "--coretypes", CORETYPES)
    assert done.returncode == 2
    assert done.stderr == f"{script}: cannot read: larger than the 1048576-byte limit\n"
