"""Disk full during stage-out, on a real small filesystem (tmpfs with size=, and a loop-mounted ext4).

Phase 1: too little space before the download -> the job waits in staging_out, nothing is written.
Phase 2: space runs out in the middle of the download (a filler written while the emulator holds the
body after its first MiB) -> ENOSPC, the job stays in staging_out, nothing appears in the output dir,
the partial waits in .burst-staging/. Phase 3: space returns -> retried, resumed, DONE, right md5.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_rig
from rig import AgentRig, wait_until

from burst_agent.lifecycle import JobState
from burst_agent.rescale.emulator import files_api

SIZE = 8 * 1024 * 1024
# big.bin comes inside the packed outputs (outputs.tar) or, when that fails, on its own: the first of
# them to be downloaded is held.
GATED = ("big.bin", "outputs.tar")
SEED = 7
FS_MB = {"tmpfs": 24, "ext4": 32}
JOB = (
    "#!/bin/bash\n#SBATCH -n 1\n"
    f"python3 -c \"import random; open('big.bin', 'wb').write(random.Random({SEED}).randbytes({SIZE}))\"\n"
)
EXPECTED_MD5 = hashlib.md5(random.Random(SEED).randbytes(SIZE), usedforsecurity=False).hexdigest()


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=60)


@pytest.fixture(params=sorted(FS_MB))
def small_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A mounted filesystem of a few MiB; always unmounted, even when the test fails."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    size = FS_MB[request.param]
    if request.param == "tmpfs":
        _run("mount", "-t", "tmpfs", "-o", f"size={size}m,mode=0755", "tmpfs", mnt)
    else:
        image = tmp_path / "fs.img"
        with open(image, "wb") as handle:
            handle.truncate(size * 1024 * 1024)
        _run("mkfs.ext4", "-q", "-F", "-m", "0", image)  # -m 0: no root reserve, statvfs tells the truth
        _run("mount", "-o", "loop", image, mnt)
    try:
        yield mnt
    finally:
        done = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)


def _free(path: Path) -> int:
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def _fill(path: Path, leave: int) -> Path:
    """Write a filler file so that about `leave` bytes stay free (ext4 metadata may make it a bit less)."""
    filler = path / "filler"
    remaining = max(0, _free(path) - leave)
    block = b"\xff" * (64 * 1024)
    with open(filler, "wb", buffering=0) as handle:
        try:
            while remaining > 0:
                remaining -= handle.write(block[: min(len(block), remaining)])
            os.fsync(handle.fileno())
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


class Gate:
    """Holds the emulator's big.bin body after its first block until released (first request only)."""

    def __init__(self) -> None:
        self.armed = False
        self.first_block = threading.Event()
        self.release = threading.Event()

    def wrap(self, original: Any) -> Any:
        def gated(request: Any, path: Path, name: str, md5: str) -> Any:
            response = original(request, path, name, md5)
            if name in GATED and self.armed:
                self.armed = False
                response.response = self._body(response.response)
            return response

        return gated

    def _body(self, body: Any) -> Iterator[bytes]:
        try:
            for index, chunk in enumerate(body):
                yield chunk
                if index == 0:
                    self.first_block.set()
                    self.release.wait(30)
        finally:
            getattr(body, "close", lambda: None)()


def _staging_out(rig: AgentRig, entry: str, error: str, after: int) -> None:
    """Wait until a stage-out attempt failed with `error` (logged after `after` chars) and check the job."""
    wait_until(lambda: error in rig.logs()[after:], 60, f"a stage-out failure mentioning {error!r}")
    job = rig.job(entry)
    assert job is not None and job.state is JobState.STAGING_OUT, f"job left staging_out: {job}"


def _nothing_in_place(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name not in {"slurm-1.out", ".burst-staging"})


def test_disk_full_during_stage_out_waits_then_completes(small_fs: Path, tmp_path: Path, module_emulator,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate()
    monkeypatch.setattr(files_api, "download_response", gate.wrap(files_api.download_response))
    work = small_fs / "work"
    work.mkdir()
    filler = _fill(small_fs, leave=SIZE // 2)  # outside the workdir: not an input
    rig = make_rig(tmp_path / "agent", module_emulator, staging={"free_space_margin_bytes": 0})
    rig.start()
    try:
        entry = rig.submit(JOB, work, job_id="1")
        # 1: not enough space before the download: nothing is written, the job waits.
        _staging_out(rig, entry, "InsufficientSpaceError", 0)
        assert _nothing_in_place(work) == [], "nothing may be written when the space check fails"
        assert not any((work / ".burst-staging").glob("*")) if (work / ".burst-staging").exists() else True
        # 2: space returns, the download starts, and the disk fills up under it.
        gate.armed = True
        mark = len(rig.logs())
        filler.unlink()
        assert gate.first_block.wait(60), "the agent never retried the download after space returned"
        filler = _fill(small_fs, leave=1024 * 1024)
        gate.release.set()
        _staging_out(rig, entry, "No space left on device", mark)
        assert _nothing_in_place(work) == [], f"partial output left in place: {_nothing_in_place(work)}"
        # The archive's partial, and big.bin's if the fallback to the loose file started too.
        partials = list((work / ".burst-staging").glob("*.partial"))
        assert 1 <= len(partials) <= 2 and all(0 < p.stat().st_size < SIZE + 4096 for p in partials), partials
        # 3: space returns for good: retried, resumed from the partial, complete and correct.
        filler.unlink()
        job = rig.wait_terminal(entry, timeout=120)
        assert job.state is JobState.DONE, job
        data = (work / "big.bin").read_bytes()
        assert hashlib.md5(data, usedforsecurity=False).hexdigest() == EXPECTED_MD5
        assert not (work / ".burst-staging").exists()
    finally:
        rig.stop()
