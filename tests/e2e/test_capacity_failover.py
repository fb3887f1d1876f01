"""Capacity failover end to end: the cheapest coretype has no capacity on Rescale (the emulator's
no_capacity fault), the job completes on the next cheapest one, and its record names what ran."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rig import AgentRig
from test_core_cap import _metrics

from burst_agent.config import TranslateConfig
from burst_agent.lifecycle import JobState
from burst_agent.record import plan_of
from burst_agent.schedrecord import fields
from burst_agent.translate import load_catalogue, parse_script, translate

SCRIPT = "#!/bin/bash\n#SBATCH -n 2\necho {name} ran\n"
DATA = Path(__file__).parents[2] / "burst_agent" / "data" / "coretypes.json"


def _choices() -> list[str]:
    result = translate(parse_script(SCRIPT.format(name="x")), load_catalogue(json.loads(DATA.read_text())),
                       TranslateConfig(), fallbacks=2)
    return [result.coretype, *(hw.coretype for hw in result.fallbacks)]


def _remote_jobs(emulator, key: str) -> list:
    return [j for j in emulator.app.ctx.store.jobs_newest_first() if key in j.name]


def test_no_capacity_on_the_cheapest_coretype_runs_the_job_on_the_next(tmp_path, emulator):
    cheapest, following, _ = _choices()
    emulator.faults.update({"no_capacity": [cheapest]})
    rig = AgentRig(tmp_path, emulator, extra_config={"failover": {"cooldown_after": 1}})
    try:
        works = {n: rig.workdir(f"w{n}") for n in (1, 2)}
        rig.start()
        first = rig.wait_terminal(rig.submit(SCRIPT.format(name="first"), works[1], job_id="1"), timeout=90)
        assert first.state is JobState.DONE and first.attempt == 1
        assert plan_of(first).coretype == following and fields(first, time.time())["coretype"] == following
        assert plan_of(first).price_per_core_hour == first.plan.fallbacks[0].price_per_core_hour
        log = (works[1] / "slurm-1.out").read_text()
        assert f"Rescale could not place the job on {cheapest}" in log and "first ran" in log
        unplaced, ran = sorted(_remote_jobs(emulator, first.reconcile_key), key=lambda j: j.created)
        assert unplaced.statuses[-1].reason == "Could not allocate compute resources"
        assert ran.id == first.remote_job_id and ran.name.endswith(f"[{first.reconcile_key}-try2]")
        metrics = _metrics(rig)
        assert f'burst_agent_capacity_failovers_total{{coretype="{cheapest}"}} 1.0' in metrics
        assert f'burst_agent_coretype_cooling_down{{coretype="{cheapest}"}} 1.0' in metrics
        # Cooling down: the next job starts on the next coretype and never tries the cheapest.
        second = rig.wait_terminal(rig.submit(SCRIPT.format(name="second"), works[2], job_id="2"), timeout=90)
        assert (second.state, plan_of(second).coretype) == (JobState.DONE, following)
        assert len(_remote_jobs(emulator, second.reconcile_key)) == 1
    finally:
        rig.stop()
