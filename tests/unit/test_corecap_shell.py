"""The cloud core cap in the pipeline: a held job waits (said once), then runs; metrics; doctor's check."""

from __future__ import annotations

import pytest
from stagekit import open_store
from test_corecap import job

from burst_agent import doctor
from burst_agent.config import config_from_mapping
from burst_agent.lifecycle import JobState
from burst_agent.logsetup import get_logger
from burst_agent.metrics import Metrics
from burst_agent.pipeline import advance as advance_module
from burst_agent.pipeline.advance import advance
from burst_agent.pipeline.context import Catalogue, Context
from burst_agent.pipeline.corecap import admit, gate_for
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.pipeline.submit import create
from burst_agent.spool import Spool

S = JobState
MESSAGE = "burst-agent: waiting for cloud cores: this job needs 8, 8 of the site's 8 are in use\n"


@pytest.fixture
def ctx(tmp_path):
    config = config_from_mapping({"agent": {"max_cloud_cores": 8, "spool_dir": str(tmp_path / "spool")}})
    with open_store(tmp_path / "state.db") as store:
        spool = Spool(tmp_path / "spool").ensure()
        yield Context(config=config, client=None, store=store, spool=spool,  # type: ignore[arg-type]
                      catalogue=Catalogue(fetch=list), log=get_logger())


def created(ctx, rec):
    ctx.store.transition(rec.id, S.CREATING)
    return ctx.store.transition(rec.id, S.CREATED, remote_job_id=f"R-{rec.entry}")


def test_a_held_job_waits_says_so_once_then_runs_when_cores_free(ctx, tmp_path, monkeypatch):
    running = job(ctx.store, "first", 8, S.RUNNING)
    second = job(ctx.store, "second", 8, stdout_path=str(tmp_path / "slurm-2.out"))
    creates = []
    monkeypatch.setattr(advance_module, "create", lambda c, j: creates.append(j.id) or created(c, j))
    held = advance(ctx, advance(ctx, second))  # twice: the second pass must not repeat the message
    assert (held.state, creates) == (S.HELD, [])
    assert held.result.reason == MESSAGE.removeprefix("burst-agent: ").strip()
    assert (tmp_path / "slurm-2.out").read_text() == MESSAGE
    ctx.store.transition(running.id, S.STAGING_OUT)
    ctx.store.transition(running.id, S.DONE)
    gate_for(ctx.store).clock = lambda: 1e12  # past the snapshot's lifetime
    done = admit(ctx, ctx.store.get(second.id), lambda c, j: created(c, j))
    assert done.state is S.CREATED and done.result.reason is None
    assert (tmp_path / "slurm-2.out").read_text() == MESSAGE


def test_a_job_bigger_than_the_whole_cap_fails_before_its_inputs_travel(ctx):
    reason = r"needs 16 cloud cores .* whole cap of 8 \(agent.max_cloud_cores\)"
    with pytest.raises(PermanentJobError, match=reason):  # no client: an upload would crash otherwise
        advance(ctx, job(ctx.store, "big", 16, S.TRANSLATED))
    with pytest.raises(PermanentJobError, match=reason):  # inputs staged before the cap was lowered
        advance(ctx, job(ctx.store, "staged", 16))


def test_an_interrupted_create_is_never_held_by_the_cap(ctx):
    job(ctx.store, "first", 8, S.RUNNING)
    job(ctx.store, "retry", 8, S.CREATING)
    assert advance_module.STEPS[S.CREATING] is create  # reconcile or retry: never back to the gate
    assert gate_for(ctx.store).in_use() == 16  # counted since its first attempt


def test_metrics_show_cores_in_use_and_the_cap():
    metrics = Metrics()
    metrics.watch_cloud_cores(lambda: (24, 32))
    assert metrics.registry.get_sample_value("burst_agent_cloud_cores_in_use") == 24
    assert metrics.registry.get_sample_value("burst_agent_cloud_cores_cap") == 32
    metrics.watch_cloud_cores(lambda: (0, None))
    assert metrics.registry.get_sample_value("burst_agent_cloud_cores_cap") is None


SHOW_LICENSES = "LicenseName=rescale_cores\n    Total=1000 Used=64 Free=936 Reserved=0 Remote=no\n"


def test_doctor_compares_the_cap_with_slurms_license_total():
    assert doctor.license_totals(SHOW_LICENSES) == {"rescale_cores": 1000}
    assert doctor.compare_cap(1000, 1000)[0] == "ok"
    status, detail, fix = doctor.compare_cap(None, 1000)
    assert status == "warning" and "can provision more than 1000" in detail
    assert fix == "set agent.max_cloud_cores: 1000"
    assert doctor.compare_cap(512, 1000)[0] == "warning"
    assert doctor.compare_cap(None, None)[0] == "warning" and doctor.compare_cap(64, None)[0] == "ok"


def test_doctor_check_runs_scontrol_show_licenses():
    seen = []

    def run(argv, timeout):
        seen.append(list(argv))
        return doctor.Completed(0, SHOW_LICENSES)

    c = doctor.Context(None, doctor.Host(environ={}, run=run))
    c.config = config_from_mapping({"agent": {"max_cloud_cores": 256}})
    result = doctor.check_core_cap(c)
    assert seen == [["scontrol", "show", "licenses"]]
    assert result.status == "warning" and "agent.max_cloud_cores = 256" in result.detail
    assert result.fix == "set agent.max_cloud_cores: 1000, or the license to 256"
