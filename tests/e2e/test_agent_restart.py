"""SIGKILL at the worst moments, then a restart: every job completes, never twice; faults survived."""

from __future__ import annotations

import hashlib

from burst_agent.lifecycle import JobState

BIG_OUTPUT = "#!/bin/bash\nhead -c 33554432 /dev/urandom > big.bin\nmd5sum big.bin > big.md5\n"


def _killed_then_completes(rig, failpoint: str, entry: str):
    rig.start(failpoints=failpoint)
    assert rig.wait_exit() == -9, rig.logs()
    rig.start()
    return rig.wait_terminal(entry)


def test_killed_mid_upload_then_restart_completes(rig):
    work = rig.workdir("upload", {"mesh.bin": b"m" * (65 * 1024 * 1024 + 1)})
    entry = rig.submit("#!/bin/bash\nwc -c < mesh.bin > size.txt\n", work)
    job = _killed_then_completes(rig, "upload.midway", entry)
    assert (job.state, job.result.exit_code) == (JobState.DONE, 0)
    assert (work / "size.txt").read_text().strip() == str(65 * 1024 * 1024 + 1)
    assert rig.emulator.stats()["jobsCreated"] == 1


def test_killed_between_create_and_persist_makes_no_duplicate(rig):
    entry = rig.submit("#!/bin/bash\necho once > once.txt\n", rig.workdir("create"))
    rig.start(failpoints="create.before_persist")
    assert rig.wait_exit() == -9
    crashed = rig.job(entry)
    assert crashed.state is JobState.CREATING and crashed.remote_job_id is None
    rig.start()
    job = rig.wait_terminal(entry)
    assert (job.state, job.result.exit_code) == (JobState.DONE, 0)
    assert rig.emulator.stats()["jobsCreated"] == 1
    assert "reconciled" in rig.logs()
    # Restarted seconds after a crash: no fresh burst of API calls (crash-loop pacing).
    assert rig.logs().count("API budgets start empty") == 1


def test_killed_mid_download_then_restart_completes(rig):
    work = rig.workdir("download")
    entry = rig.submit(BIG_OUTPUT, work)
    job = _killed_then_completes(rig, "download.midway", entry)
    assert job.state is JobState.DONE
    expected = (work / "big.md5").read_text().split()[0]
    assert hashlib.md5((work / "big.bin").read_bytes()).hexdigest() == expected
    assert not (work / ".burst-staging").exists()


def test_429_and_500_storm_is_survived(rig):
    rig.emulator.set_faults(fault_429=0.25, fault_500=0.1, retry_after=1, seed=3)
    rig.start()
    entries = [rig.submit(f"#!/bin/bash\necho {n} > n.txt\n", rig.workdir(f"f{n}"), job_id=str(n))
               for n in range(4)]
    jobs = [rig.wait_terminal(entry, timeout=120) for entry in entries]
    assert [(j.state, j.result.exit_code) for j in jobs] == [(JobState.DONE, 0)] * 4
    assert rig.emulator.stats()["jobsCreated"] == 4
    injected = rig.emulator.stats()["faultsInjected"]
    assert injected["fault_429"] > 0 and injected["fault_500"] > 0, injected


def test_sigterm_mid_upload_exits_promptly_and_the_job_resumes(rig):
    work = rig.workdir("term", {"mesh.bin": b"t" * (96 * 1024 * 1024)})
    entry = rig.submit("#!/bin/bash\nwc -c < mesh.bin > size.txt\n", work)
    rig.start()
    rig.wait_job(entry, lambda j: j.state is JobState.STAGING_IN, what="stage-in under way")
    rig.stop()  # SIGTERM, then waits
    assert rig.proc.returncode == 0, rig.logs()
    assert "agent stopped" in rig.logs()
    rig.start()
    job = rig.wait_terminal(entry, timeout=120)
    assert (job.state, job.result.exit_code) == (JobState.DONE, 0)
    assert (work / "size.txt").read_text().strip() == str(96 * 1024 * 1024)
    assert "API budgets start empty" not in rig.logs()  # a clean stop keeps the burst
