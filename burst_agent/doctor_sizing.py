"""doctor's check of charge sizing: with SIZE_CHARGE on, burst jobs wait held for `size-charges`."""

from __future__ import annotations

import time
from pathlib import Path

from burst_agent.cataloguecopy import catalogue_dir
from burst_agent.chargesize import sizing_mark
from burst_agent.doctorkit import (
    COMMAND_TIMEOUT_S,
    Check,
    Context,
    Result,
    burst_partitions,
    first_line,
    ok,
    skipped,
    warning,
)

LATE_S = 60.0  # the sizer passes every 2 s: a job held longer is waiting for a sizer that is not there
MAX_LOOKED_AT = 20
FIX = ("systemctl status burst-agent-size-charges (it runs as SlurmUser, whose uid SIZER_UIDS in "
       "job_submit.lua must name); docs/accounting.md \"An exact charge\"")


def _late_held(listing: str, now: float) -> list[str]:
    """Job ids of `squeue -o %A|%r|%V` lines held (JobHeld*) since more than LATE_S before `now`."""
    late = []
    for line in listing.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].startswith("JobHeld"):
            continue
        try:
            submitted = time.mktime(time.strptime(parts[2], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            continue
        if now - submitted > LATE_S:
            late.append(parts[0])
    return late


def check_charge_sizing(ctx: Context) -> Result:
    settings = ctx.lua_settings
    if settings is None:
        return skipped("job_submit.lua not readable")
    if settings.get("SIZE_CHARGE") != "true":
        return ok("off (SIZE_CHARGE false): license/rescale_cores charges tasks x cpus per task, an estimate")
    if ctx.config is not None:
        copy = catalogue_dir(Path(ctx.config.agent.spool_dir)) / "coretypes.json"
        if not copy.is_file():
            return warning(f"{copy} is missing: size-charges sizes from the agent's catalogue copy, which "
                           "the agent writes once it runs", "start burst-agent (systemctl start burst-agent)")
    partitions = ",".join(burst_partitions(ctx))
    done = ctx.host.run(["squeue", "-h", "-t", "PD", "-p", partitions, "-o", "%A|%r|%V"], COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        return skipped(f"squeue: {first_line(done.stderr, 'did not run')}")

    def marked(job_id: str) -> bool:
        shown = ctx.host.run(["scontrol", "show", "job", "-o", job_id], COMMAND_TIMEOUT_S)
        return sizing_mark(shown.stdout) is not None

    waiting = [job_id for job_id in _late_held(done.stdout, time.time())[:MAX_LOOKED_AT] if marked(job_id)]
    if waiting:
        return warning(f"{len(waiting)} burst job(s) held for sizing for over {LATE_S:.0f} s "
                       f"({', '.join(waiting[:5])}): is size-charges running?", FIX)
    return ok("on: no burst job waits for its sizing")


SLURM_CHECKS: tuple[tuple[str, Check], ...] = (("slurm charge sizing", check_charge_sizing),)
