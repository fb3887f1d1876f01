"""Benchmark: how long burst jobs wait held for `burst-agent size-charges` (real Slurm, root only).

Submits N burst jobs at once (as burstuser_a of .ci/slurm-setup.sh) with job_submit.lua's SIZE_CHARGE on
and the relay replaced by /bin/true, then times one sizing pass over all of them: one job at a time,
then SIZERS at a time (N more jobs). Peer, in the same run: N bare `scontrol show job` calls, the
floor of any per-job Slurm round trip. The installed
job_submit.lua is put back afterwards.

Run: .venv/bin/python benchmarks/charge_sizing.py [N]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from burst_agent.commands.size_charges import SIZERS, _run, one_pass
from burst_agent.config import config_from_mapping
from burst_agent.translate import load_catalogue

ROOT = Path(__file__).resolve().parents[1]
LUA = Path("/etc/slurm/job_submit.lua")
USER = "burstuser_a"
SCRIPT = "#!/bin/bash\n#SBATCH -n 6\n#SBATCH --mem=20G\necho sized\n"


def _install(text: str) -> None:
    before = LUA.stat().st_mtime
    LUA.write_text(text)
    future = max(time.time() + 2, before + 1)  # slurmctld reloads a plugin whose mtime second changed
    os.utime(LUA, (future, future))


def _submit(work: Path, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        done = subprocess.run(["runuser", "-u", USER, "--", "sbatch", "--parsable", "--partition=rescale",
                               "-o", "/dev/null", "job.sh"], cwd=work, capture_output=True, text=True,
                              check=True)
        ids.append(done.stdout.strip())
    return ids


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    original = LUA.read_text()
    lua = (ROOT / "deploy/slurm/job_submit.lua").read_text()
    lua = re.sub(r"^local SIZE_CHARGE = .*$", "local SIZE_CHARGE = true", lua, count=1, flags=re.M)
    lua = re.sub(r"^local BURST_AGENT = .*$", 'local BURST_AGENT = "/bin/true"', lua, count=1, flags=re.M)
    work = Path(tempfile.mkdtemp(prefix="size-bench-", dir="/tmp"))
    work.chmod(0o777)
    (work / "job.sh").write_text(SCRIPT)
    catalogue = load_catalogue(json.loads((ROOT / "burst_agent/data/coretypes.json").read_text()))
    cfg = config_from_mapping({}).translate
    rows, ok = [], True
    try:
        _install(lua)
        time.sleep(1.5)
        for sizers in (1, SIZERS):
            ids = _submit(work, count)
            start = time.perf_counter()
            released = one_pass(_run, "rescale", "rescale_cores", catalogue, cfg, set(), sizers=sizers)
            rows.append((sizers, released, time.perf_counter() - start))
            ok = ok and released == count
            subprocess.run(["scancel", *ids], check=False)
        start = time.perf_counter()
        for job_id in ids:
            subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, check=False)
        peer_s = time.perf_counter() - start
    finally:
        _install(original)
        subprocess.run(["scancel", "-u", USER, "--partition=rescale"], check=False)
    for sizers, released, took in rows:
        print(f"{count} held jobs, {sizers} at a time: released {released} in {took:.2f} s "
              f"({took / count * 1000:.0f} ms per job, {count / took:.1f} jobs/s)")
    ratio = rows[-1][2] / peer_s
    print(f"peer: {count} x scontrol show job, one after another: {peer_s:.2f} s "
          f"({peer_s / count * 1000:.0f} ms each); one pass {SIZERS} at a time / peer: {ratio:.1f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
