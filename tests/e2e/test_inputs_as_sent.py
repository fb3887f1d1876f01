"""What reaches the remote side is exactly the user's: archives intact, the real scheduler variables,
and none of the job's own files (its logs, the script) shipped back as inputs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator

import pytest
from rig import AgentRig

from burst_agent.lifecycle import JobState
from burst_agent.rescale.emulator import start_emulator


def _tar_gz(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = os.urandom(size)
        info = tarfile.TarInfo("inside.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inside.bin", os.urandom(size))
    return buf.getvalue()


@pytest.fixture(params=["unpack", "place"])
def archive_rig(request, tmp_path) -> Iterator[AgentRig]:
    """An agent against an emulator that unpacks archive inputs and removes them (as a server was seen
    to), or one that leaves every input as it is: the job must not notice the difference."""
    emulator = start_emulator(tmp_path / "emulator", "archive-test-token-0123456789", step_seconds=0.05,
                              stop_grace_seconds=1.0, archive_inputs=request.param)
    (tmp_path / "agent").mkdir()
    agent = AgentRig(tmp_path / "agent", emulator, extra_config={"staging": {"large_file_bytes": 8192}})
    try:
        yield agent
    finally:
        agent.stop()
        emulator.stop()


def test_archives_arrive_byte_identical_under_their_own_names(archive_rig):
    files = {"data.tar.gz": _tar_gz(20000), "case/data.zip": _zip(20000), "small.tgz": _tar_gz(10),
             "small.zip": _zip(10)}
    checks = "".join(f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in files.items())
    script = f"#!/bin/bash\nsha256sum -c - <<'EOF' > checked.txt\n{checks}EOF\n"
    work = archive_rig.workdir("archives", files)
    archive_rig.start()
    job = archive_rig.wait_terminal(archive_rig.submit(script, work, job_id="5"))
    assert (job.state, job.result.exit_code) == (JobState.DONE, 0), (work / "slurm-5.out").read_text()
    assert (work / "checked.txt").read_text().count(": OK") == 4
    assert not (work / "inside.bin").exists() and not (work / "case" / "inside.bin").exists()


RELAYED = """#!/bin/bash
#SBATCH --array=1-3
#SBATCH -o custom-%j.log
env | grep -E '^SLURM_(JOB_ID|JOBID|ARRAY_[A-Z_]+|JOB_NAME|JOB_ACCOUNT|JOB_PARTITION)=' | sort > env.txt
ls -A > listing.txt
"""
SLURM_TASK = {"SLURM_JOB_ID": "41", "SLURM_JOBID": "41", "SLURM_ARRAY_JOB_ID": "40",
              "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
              "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_STEP": "1", "SLURM_JOB_NAME": "sweep",
              "SLURM_JOB_ACCOUNT": "physics", "SLURM_JOB_PARTITION": "rescale", "SLURM_NTASKS": "1"}


def test_a_relayed_array_task_sees_slurms_values_and_none_of_its_own_files(rig):
    work = rig.workdir("relayed", {"data.txt": b"d", "slurm-39.out": b"old log", "job.sh": RELAYED.encode(),
                                   "prev.o12": b"old pbs log"})
    request = {"workdir": str(work), "stdout": "custom-%j.log", "job_name": "sweep", "partition": "rescale"}
    (work.parent / "request.json").write_text(json.dumps(request))
    (work.parent / "job.sh").write_text(RELAYED)
    rig.start()
    argv = [sys.executable, "-m", "burst_agent.cli", "relay", "--script", str(work.parent / "job.sh"),
            "--request", str(work.parent / "request.json"), "--spool", str(rig.spool.root)]
    with open(work / "custom-41.log", "wb") as log:  # the job's -o file: the relay's stdout, as under Slurm
        relay = subprocess.run(argv, cwd=work, env={"PATH": "/usr/bin:/bin", **SLURM_TASK}, stdout=log,
                               stderr=subprocess.STDOUT, timeout=90)
    assert relay.returncode == 0, (work / "custom-41.log").read_text()
    carried = {k: v for k, v in SLURM_TASK.items() if k != "SLURM_NTASKS"}  # the proxy's own shape
    assert (work / "env.txt").read_text() == "".join(f"{k}={v}\n" for k, v in sorted(carried.items()))
    listing = (work / "listing.txt").read_text().split()
    assert "data.txt" in listing
    assert not {"custom-41.log", "slurm-39.out", "job.sh", "prev.o12"} & set(listing)


def test_a_plain_script_with_input_lines_fails_with_the_reason_instead_of_running_without_them(rig):
    staged = rig.spool.tmp / "plain.sh"
    staged.write_text("#!/bin/bash\n#BURST --input mesh/\nls mesh\n")
    staged.rename(rig.spool.incoming / "plain.sh")
    rig.start()
    job = rig.wait_terminal("plain.sh")
    assert job.state is JobState.FAILED
    assert "script line 2: '#BURST --input mesh/': a plain script entry has no working directory" in (
        job.result.reason)
    assert rig.emulator.stats()["jobsCreated"] == 0
