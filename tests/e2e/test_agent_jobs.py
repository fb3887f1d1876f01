"""The agent end to end over real HTTP: outputs, exit codes, cancel, quarantine, unsafe outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from waiting import wait_until

from burst_agent.lifecycle import JobState

OK_SCRIPT = """#!/bin/bash
#SBATCH -J e2e-ok
#SBATCH -n 2
echo "remote says hello"
mkdir -p out && tr a-z A-Z < input.txt > out/upper.txt
"""


def test_success_brings_outputs_and_log_back(rig):
    work = rig.workdir("ok", {"input.txt": b"shout\n"})
    rig.start()
    job = rig.wait_terminal(rig.submit(OK_SCRIPT, work, job_id="41"))
    assert (job.state, job.result.exit_code) == (JobState.DONE, 0)
    assert (work / "out" / "upper.txt").read_text() == "SHOUT\n"
    assert "remote says hello" in (work / "slurm-41.out").read_text()
    assert not (work / "burst_exit_code").exists()


def test_exit_code_3_is_reported(rig):
    work = rig.workdir("fail")
    rig.start()
    job = rig.wait_terminal(rig.submit("#!/bin/bash\necho partial > p.txt\nexit 3\n", work))
    assert (job.state, job.result.exit_code) == (JobState.FAILED, 3)
    assert "exited with code 3" in job.result.reason
    assert (work / "p.txt").read_text() == "partial\n"


def test_untranslatable_script_is_quarantined_with_its_reason(rig):
    work = rig.workdir("bad")
    rig.start()
    entry = rig.submit("#!/bin/bash\n#SBATCH -N 2\n#SBATCH --time=abc\necho never\n", work)
    job = rig.wait_terminal(entry, timeout=20)
    assert job.state is JobState.FAILED
    # The final transition is committed first, the spool entry quarantined right after it.
    reason_file = rig.spool.failed / f"{entry}.reason"
    reason = wait_until(lambda: reason_file.exists() and reason_file.read_text(), 10, "the reason file")
    assert f"{entry}:3: #SBATCH --time=abc: invalid time" in reason
    assert (rig.spool.failed / entry / "script").read_text().endswith("echo never\n")
    assert rig.emulator.stats()["jobsCreated"] == 0


def test_cancel_stops_the_remote_job(rig):
    work = rig.workdir("long")
    rig.start()
    entry = rig.submit("#!/bin/bash\necho started > started.txt\nsleep 120\n", work)
    rig.wait_job(entry, lambda j: j.remote.status == "Executing", what="remote Executing")
    cli = [sys.executable, "-m", "burst_agent.cli", "cancel", "--config", str(rig.config_path), entry]
    assert "cancel requested" in subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    job = rig.wait_terminal(entry, timeout=40)
    assert job.state is JobState.CANCELLED
    assert JobState.STOPPING in rig.states(entry)
    assert (work / "started.txt").exists()  # outputs produced so far still come back


def test_a_workdir_deleted_mid_job_fails_the_job_instead_of_retrying_forever(rig):
    work = rig.workdir("gone")
    rig.start()
    entry = rig.submit("#!/bin/bash\nsleep 2\necho result > r.txt\n", work)
    rig.wait_job(entry, lambda j: j.remote_job_id is not None, what="a remote job")
    shutil.rmtree(work)
    job = rig.wait_terminal(entry, timeout=40)
    assert job.state is JobState.FAILED and f"output directory {work} no longer exists" in job.result.reason
    assert job.remote_job_id in job.result.reason  # where the outputs still are
    reason_file = rig.spool.failed / f"{entry}.reason"  # written just after the final state
    assert "no longer exists" in wait_until(lambda: reason_file.exists() and reason_file.read_text(), 10,
                                            "the quarantine reason")


def test_unsafe_remote_output_paths_are_refused(rig, tmp_path):
    from burst_agent.rescale.emulator.store import FileRecord

    work = rig.workdir("evil")
    rig.start()
    entry = rig.submit("#!/bin/bash\nsleep 2\necho fine > fine.txt\n", work)
    job = rig.wait_job(entry, lambda j: j.remote_job_id is not None, what="a remote job")
    store = rig.emulator.store
    for index, evil in enumerate(("../../escaped.txt", "/etc/burst-evil.txt")):
        payload = tmp_path / f"evil{index}"
        payload.write_text("evil\n")
        record = FileRecord(f"evil{index}", payload.name, payload, 5, "ab0ee2f2ff9cd3cbd8e53ffc1d2f7a8f", 5,
                            evil, evil)
        with store.lock:
            store.add_file(record)
            store.jobs[job.remote_job_id].output_file_ids.append(record.id)
    job = rig.wait_terminal(entry)
    assert "outputs refused" in job.result.reason and "../../escaped.txt" in job.result.reason
    assert (work / "fine.txt").read_text() == "fine\n"
    assert "output '../../escaped.txt' refused" in (work / "slurm-1.out").read_text()
    assert not (work.parent.parent / "escaped.txt").exists()
    assert not os.path.exists("/etc/burst-evil.txt")


def test_live_log_grows_while_the_remote_job_runs(tmp_path, emulator):
    from rig import AgentRig
    from waiting import wait_until

    (tmp_path / "live").mkdir()
    rig = AgentRig(tmp_path / "live", emulator, extra_config={"agent": {"log_tail_interval_s": 1}})
    try:
        work = rig.workdir("live")
        rig.start()
        entry = rig.submit("#!/bin/bash\necho first-line\nsleep 12\necho last-line\n", work, job_id="9")
        log = work / "slurm-9.out"
        wait_until(lambda: log.exists() and "first-line" in log.read_text(), 20, "the first remote line")
        assert not rig.job(entry).terminal  # seen while the remote job still runs
        assert rig.wait_terminal(entry).state is JobState.DONE
        assert log.read_text().count("first-line") == 1 and "last-line" in log.read_text()
    finally:
        rig.stop()
