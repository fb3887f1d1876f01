"""A job's own files never travel as its inputs: its logs, the scheduler's logs, the submitted script."""

import json
import os
from pathlib import Path

import pytest
from fstree import make_tree

from burst_agent import relay
from burst_agent.config import StagingConfig
from burst_agent.staging.inputs import InputPatternError, plan_inputs
from burst_agent.staging.jobplan import job_plan

SCRIPT = "#!/bin/bash\n#SBATCH -o custom-%j.log\ncat data.txt\n"


def _sent(plan) -> list[str]:
    return sorted(str(m.rel) for m in [*plan.bundle_members, *plan.large_files])


def test_a_workdir_file_with_the_scripts_bytes_is_not_sent_again(tmp_path: Path) -> None:
    work = make_tree(tmp_path / "w", {"job.sh": SCRIPT.encode(), "same-size.sh": b"x" * len(SCRIPT),
                                      "data.txt": b"d"})
    (tmp_path / "script").write_text(SCRIPT)
    plan = job_plan(work, SCRIPT, tmp_path / "script", StagingConfig(), exclude=[])
    assert _sent(plan) == ["burst_job_script", "data.txt", "same-size.sh"]


def test_every_scheduler_log_is_left_out_and_look_alikes_are_kept(tmp_path: Path) -> None:
    logs = ["slurm-12.out", "slurm-40_1.out", "slurm-sweep-12.out", "run.o123", "run.e123", "run.o77.2",
            "sub/job.pbs.o5-3"]
    kept = ["data.out", "mesh.o", "slurm.out", "x.o1a"]
    plan = plan_inputs(make_tree(tmp_path / "w", {name: b"x" for name in [*logs, *kept]}), "")
    assert _sent(plan) == kept


def test_the_relay_leaves_out_its_own_output_files_and_the_script(tmp_path: Path, monkeypatch) -> None:
    work = make_tree(tmp_path / "w", {"custom-47.log": b"o", "own.err": b"e", "job.sh": SCRIPT.encode(),
                                      "data.txt": b"d"})
    os.symlink(work / "own.err", tmp_path / "fd2")  # what /proc/self/fd/2 is for a Slurm job's -e file
    monkeypatch.setattr(relay, "OWN_STREAMS", (str(tmp_path / "fd2"), str(tmp_path / "no-such-fd")))
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "script").write_text(SCRIPT)
    request = {"job_id": "47", "stdout": "custom-%j.log", "workdir": str(work)}
    relay.prepare_inputs(entry, work, SCRIPT, StagingConfig(), request=request)
    manifest = json.loads((entry / relay.INPUT_MANIFEST).read_text())
    assert sorted(manifest["bundle_md5s"]) == ["burst_job_script", "data.txt"]


def test_input_lines_of_a_plain_script_are_refused_not_ignored(tmp_path: Path) -> None:
    script = "#!/bin/bash\necho hi\n#BURST --input mesh/\n"
    (tmp_path / "script").write_text(script)
    with pytest.raises(InputPatternError, match=r"script line 3: '#BURST --input mesh/': a plain script"):
        job_plan(None, script, tmp_path / "script", StagingConfig(), exclude=[])
