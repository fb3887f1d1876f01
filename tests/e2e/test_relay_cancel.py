"""A cancelled relay job still brings back its partial outputs and its whole log (SIGTERM, an admin's
cancel, a relay killed before the end and finished by `burst-agent deliver`), against a real agent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from waiting import wait_until

TICKS = "#!/bin/bash\nfor i in $(seq 1 600); do echo tick $i; echo $i > partial.txt; sleep 0.2; done\n"


def _relay(rig, work: Path, env: dict[str, str], path: str = "/usr/bin:/bin") -> tuple[subprocess.Popen,
                                                                                      Path]:
    (work / "job.sh").write_text(TICKS)
    (work / "request.json").write_text(json.dumps({"workdir": str(work)}))
    log = work / "slurm-77.out"
    argv = [sys.executable, "-m", "burst_agent.cli", "relay", "--script", str(work / "job.sh"),
            "--request", str(work / "request.json"), "--spool", str(rig.spool.root)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=work, env={"PATH": path, **env}, stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, log


def _remote_ticks(rig) -> list[str]:
    job = wait_until(lambda: [j for j in rig.emulator.store.jobs.values() if j.status == "Completed"], 60,
                     "the remote job stopped")[0]
    return re.findall(r"tick \d+", (Path(job.work_dir) / "process_output.log").read_text())


def _executing(rig) -> None:
    wait_until(lambda: any("tick 3" in (Path(j.work_dir) / "process_output.log").read_text(errors="replace")
                           for j in rig.emulator.store.jobs.values()
                           if j.work_dir and (Path(j.work_dir) / "process_output.log").exists()),
               60, "the remote job printing")


def test_sigterm_delivers_the_partial_outputs_and_the_whole_log(rig):
    work = rig.workdir("term")
    rig.start()
    relay, log = _relay(rig, work, {"SLURM_JOB_ID": "77"})
    _executing(rig)
    relay.send_signal(signal.SIGTERM)
    assert relay.wait(timeout=60) == -signal.SIGTERM
    text = log.read_text()
    assert re.findall(r"tick \d+", text) == _remote_ticks(rig), text
    assert int((work / "partial.txt").read_text()) >= 3


def test_an_admin_cancel_ends_with_the_scheduler_cancelling_the_job(rig, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scancel").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/scancel.args\nkill -TERM $PPID\n')
    (bin_dir / "scancel").chmod(0o755)
    work = rig.workdir("admin")
    rig.start()
    relay, log = _relay(rig, work, {"SLURM_JOB_ID": "78"}, path=f"{bin_dir}:/usr/bin:/bin")
    _executing(rig)
    entry = wait_until(lambda: rig.spool.list_claimed(), 30, "the claimed entry")[0]
    cancel = subprocess.run([sys.executable, "-m", "burst_agent.cli", "cancel", "--config",
                             str(rig.config_path), entry], capture_output=True, text=True, timeout=30)
    assert cancel.returncode == 0, cancel.stderr
    assert relay.wait(timeout=60) == -signal.SIGTERM
    assert (tmp_path / "scancel.args").read_text().split() == ["78"]
    assert (work / "partial.txt").exists()
    assert re.findall(r"tick \d+", log.read_text()) == _remote_ticks(rig)


def test_a_relay_killed_before_the_end_is_finished_by_deliver(rig):
    work = rig.workdir("killed")
    rig.start()
    relay, log = _relay(rig, work, {"SLURM_JOB_ID": "79"})
    _executing(rig)
    relay.send_signal(signal.SIGTERM)
    wait_until(lambda: "cancel requested" in log.read_text(), 20, "the cancel request")
    relay.kill()  # KillWait over: SIGKILL before the stop came back
    relay.wait(timeout=10)
    assert not (work / "partial.txt").exists()
    deliver = subprocess.run([sys.executable, "-m", "burst_agent.cli", "deliver", "--job", "79", "--spool",
                              str(rig.spool.root)], capture_output=True, text=True, timeout=120,
                             env={"PATH": "/usr/bin:/bin"})
    assert deliver.returncode == 143, deliver.stdout + deliver.stderr
    ticks = re.findall(r"tick \d+", log.read_text())
    assert ticks == _remote_ticks(rig), log.read_text()
    assert int((work / "partial.txt").read_text()) >= 3
    again = subprocess.run([sys.executable, "-m", "burst_agent.cli", "deliver", "--job", "79", "--spool",
                            str(rig.spool.root)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and re.findall(r"tick \d+", log.read_text()) == ticks
    assert os.stat(log).st_size == len(log.read_bytes())
