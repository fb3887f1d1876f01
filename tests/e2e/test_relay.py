"""The relay under a PBS-like environment, against a real agent process: exit code, log, outputs, cancel."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from waiting import wait_until

PBS_SCRIPT = """#!/bin/bash
#PBS -N relayed
#PBS -l select=1:ncpus=2
echo "remote log: $PBS_JOBID index $PBS_ARRAY_INDEX"
echo "$PBS_JOBID $PBS_ARRAY_INDEX" > out.txt
exit 5
"""


def _relay(rig, work, script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    (work / "job.pbs").write_text(script)
    (work / "request.json").write_text(json.dumps({"workdir": str(work)}))
    argv = [sys.executable, "-m", "burst_agent.cli", "relay", "--script", str(work / "job.pbs"),
            "--request", str(work / "request.json"), "--spool", str(rig.spool.root)]
    return subprocess.Popen(argv, cwd=work, env={"PATH": "/usr/bin:/bin", **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_relay_under_pbs_environment_mirrors_the_remote_job(rig):
    work = rig.workdir("pbs")
    rig.start()
    relay = _relay(rig, work, PBS_SCRIPT, {"PBS_JOBID": "55.pbsserver", "PBS_ARRAY_INDEX": "2"})
    output, _ = relay.communicate(timeout=90)
    assert relay.returncode == 5, output
    assert "remote log: 55.pbsserver index 2" in output
    assert (work / "out.txt").read_text() == "55.pbsserver 2\n"
    assert not (work / "burst_exit_code").exists()


def test_sigterm_to_the_relay_stops_the_remote_job(rig):
    work = rig.workdir("term")
    rig.start()
    relay = _relay(rig, work, "#!/bin/bash\necho up\nsleep 300\n", {"PBS_JOBID": "56.pbsserver"})
    wait_until(lambda: any(j.status == "Executing" for j in rig.emulator.store.jobs.values()), 60,
               "the remote job executing")
    relay.send_signal(signal.SIGTERM)
    output, _ = relay.communicate(timeout=15)
    assert relay.returncode == -signal.SIGTERM, output
    job = wait_until(lambda: [j for j in rig.emulator.store.jobs.values() if j.stop_mode], 30,
                     "the remote stop")[0]
    assert job.stop_mode in ("stop", "force_stop")
