"""The remote command packs what the job wrote into one archive: after the script, and after a stop."""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from waiting import wait_until

from burst_agent.command_wrapper import (
    EXIT_CODE_FILE,
    OUTPUTS_ARCHIVES,
    REMOTE_LOG,
    SCRIPT_NAME,
    build_command,
)
from burst_agent.staging.packed import scan_archive

KEPT, SOLE = (Path(OUTPUTS_ARCHIVES[mode]) for mode in ("all", "archive"))
WRITES = """#!/bin/bash
mkdir -p out && echo one > out/one.txt && echo two > out/two.txt
ln out/one.txt out/hard.txt; ln -s one.txt out/link.txt
cp -p input.txt copied.txt
truncate -s 70M big.dat
"""


def run(work: Path, script: str, keep: str = "all", path: str = "/usr/bin:/bin") -> subprocess.Popen[bytes]:
    (work / SCRIPT_NAME).write_text(script)
    command = build_command({}, ("/bin/bash",), ntasks=1, keep_outputs=keep)
    with open(work / REMOTE_LOG, "wb") as log:  # where Rescale puts the command's output
        return subprocess.Popen(["bash", "-c", command], cwd=work, env={"PATH": path, "HOME": str(work)},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tf:
        return {m.name for m in tf.getmembers() if m.isreg()}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "input.txt").write_text("given\n")
    os.utime(tmp_path / "input.txt", (1_000_000_000, 1_000_000_000))  # as an extracted input keeps it
    time.sleep(0.02)  # the start stamp comes one clock tick after the inputs were put in place
    return tmp_path


def test_what_the_job_wrote_is_packed_and_all_outputs_stay(work):
    assert run(work, WRITES).wait(timeout=20) == 0
    assert members(work / KEPT) == {"./out/one.txt", "./out/two.txt", "./out/hard.txt", "./copied.txt"}
    assert (work / "out/one.txt").exists() and (work / EXIT_CODE_FILE).read_text() == "0\n"
    assert sorted(p.name for p in (work / ".burst").iterdir()) == ["outputs.tar"]  # no list, stamp, .part


def test_the_agent_accepts_what_gnu_tar_writes(work):
    run(work, WRITES).wait(timeout=20)
    fd = os.open(work / KEPT, os.O_RDONLY)
    try:
        scanned = scan_archive(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    assert (scanned.refused, len(scanned.members)) == ([], 4)  # the hard link is a plain copy


def test_archive_mode_keeps_only_the_archive_and_what_was_not_packed(work):
    assert run(work, WRITES, keep="archive").wait(timeout=20) == 0
    assert len(members(work / SOLE)) == 4 and not (work / "out/one.txt").exists()
    left = {str(p.relative_to(work)) for p in work.rglob("*") if not p.is_dir() and ".burst" not in p.parts}
    assert left == {"input.txt", "big.dat", "out/link.txt", EXIT_CODE_FILE, SCRIPT_NAME, REMOTE_LOG}


def test_a_stopped_job_packs_what_it_wrote_so_far(work):
    process = run(work, "#!/bin/bash\necho early > early.txt\nsleep 60\necho late > late.txt\n")
    wait_until(lambda: (work / "early.txt").exists(), 10, "the script's first output")
    os.killpg(process.pid, signal.SIGTERM)  # as a stop does: the whole process group
    assert process.wait(timeout=10) == 143
    assert members(work / KEPT) == {"./early.txt"} and (work / EXIT_CODE_FILE).read_text() == "143\n"


def test_a_failed_tar_leaves_no_archive_and_every_loose_file(work):
    bin_dir = work / "fakebin"
    bin_dir.mkdir()
    fake_tar = '#!/bin/sh\necho "tar: disk full" >&2\n: > .burst/outputs-only.tar.part\nexit 2\n'
    (bin_dir / "tar").write_text(fake_tar)  # fails midway, as a full disk would
    (bin_dir / "tar").chmod(0o755)
    assert run(work, WRITES, keep="archive", path=f"{bin_dir}:/usr/bin:/bin").wait(timeout=20) == 0
    assert not (work / SOLE).exists() and not (work / f"{SOLE}.part").exists()
    assert (work / "out/one.txt").exists() and "disk full" in (work / ".burst/pack.log").read_text()


def test_an_unknown_keep_mode_is_refused():
    with pytest.raises(ValueError, match="keep_outputs must be one of all, archive, not 'some'"):
        build_command({}, ("/bin/bash",), ntasks=1, keep_outputs="some")
