"""Packed outputs end to end: 300 small outputs per job come back in a handful of requests, md5-identical.

Two agents run at once against one emulator, one per staging.keep_outputs_on_rescale mode (the
emulator's request counts are the two jobs' together).
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from rig import AgentRig

from burst_agent.command_wrapper import OUTPUTS_ARCHIVES
from burst_agent.lifecycle import JobState

FILES = 300
SCRIPT = f"""#!/bin/bash
#SBATCH -J many
mkdir -p out/deep
for i in $(seq 1 {FILES}); do head -c 8192 /dev/urandom > out/deep/f$i.bin; done
echo wrote
"""
CONTENTS = "GET /api/v2/files/<file_id>/contents/"


def md5s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in (root / "out/deep").iterdir()}


def archived_md5s(archive: Path) -> dict[str, str]:
    """What the job wrote, as the remote side packed it (its loose copies are gone in "archive" mode)."""
    with tarfile.open(archive) as tf:
        return {m.name.removeprefix("./"): hashlib.md5(tf.extractfile(m).read()).hexdigest()
                for m in tf.getmembers()}


def test_many_outputs_cost_a_handful_of_requests_in_both_modes(tmp_path, emulator):
    rigs = {}
    for mode in OUTPUTS_ARCHIVES:
        (tmp_path / mode).mkdir()
        rigs[mode] = AgentRig(tmp_path / mode, emulator, extra_config={"staging": {
            "keep_outputs_on_rescale": mode}})
    try:
        entries, works = {}, {}
        for mode, rig in rigs.items():
            rig.start()
            works[mode] = rig.workdir("many", {"input.txt": b"in\n"})
            entries[mode] = rig.submit(SCRIPT, works[mode], job_id="5")
        jobs = {mode: rig.wait_terminal(entries[mode], timeout=40) for mode, rig in rigs.items()}
    finally:
        for rig in rigs.values():
            rig.stop()
    stats = emulator.stats()
    remote = {mode: emulator.store.jobs[job.remote_job_id] for mode, job in jobs.items()}
    assert [(j.state, j.result.exit_code) for j in jobs.values()] == [(JobState.DONE, 0)] * 2
    local = {mode: md5s(work) for mode, work in works.items()}
    assert local["all"] == md5s(remote["all"].work_dir) and len(local["all"]) == FILES
    assert local["archive"] == archived_md5s(remote["archive"].work_dir / OUTPUTS_ARCHIVES["archive"])
    assert len(local["archive"]) == FILES
    with emulator.store.lock:  # "archive": Rescale keeps the archive, not the 300 files
        listed = [emulator.store.files[i].relative_path for i in remote["archive"].output_file_ids]
    assert OUTPUTS_ARCHIVES["archive"] in listed and not any(p.startswith("out/") for p in listed)
    assert stats["requests"][CONTENTS] <= 2 * 3  # per job: the exit code, the log, the archive
    assert stats["requestsTotal"] <= 2 * 15, stats["requests"]  # a job's whole life, input upload included
