"""Intake alone: a real spool entry recorded and translated (or quarantined); the pure plan decision."""

from __future__ import annotations

from decimal import Decimal

import pytest
from stagekit import CORETYPES, stage_context

from burst_agent.config import config_from_mapping
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.intake import intake, translate_job
from burst_agent.planning import EntryFacts, decide, delivery_of
from burst_agent.spool import EntryRejected, submit_entry
from burst_agent.translate import load_catalogue

S = JobState
SCRIPT = "#!/bin/bash\n#SBATCH -n 4\n#SBATCH -A acct1\necho hi\n"


@pytest.fixture
def ctx(tmp_path):
    with stage_context(tmp_path) as ctx:
        yield ctx


def test_an_entry_is_recorded_then_translated_with_its_whole_plan(ctx):
    submit_entry(ctx.spool, SCRIPT, name="good")
    assert intake(ctx) == 1
    job = ctx.store.by_entry("good")
    assert (job.state, job.reconcile_key, job.plan) == (S.RECEIVED, "burst-t-good", None)
    job = translate_job(ctx, job)
    results = ctx.spool.results / "good"
    assert job.state is S.TRANSLATED and ctx.store.history(job.id)[-1].reason == "onyx x4 x1"
    assert (job.plan.delivery, job.plan.workdir, job.plan.output_dir) == ("plain", None, str(results))
    assert (job.plan.coretype, job.plan.price_per_core_hour) == ("onyx", Decimal("0.07"))  # the cheapest
    assert job.plan.body["name"].endswith("[burst-t-good]") and job.plan.script == SCRIPT
    assert ctx.client.calls == []


def test_a_bad_directive_fails_the_job_and_quarantines_its_entry(ctx):
    submit_entry(ctx.spool, "#!/bin/bash\n#SBATCH --time=abc\necho hi\n", name="bad")
    intake(ctx)
    job = translate_job(ctx, ctx.store.by_entry("bad"))
    assert job.state is S.FAILED and "#SBATCH --time=abc: invalid time 'abc'" in job.result.reason
    assert (ctx.spool.failed / "bad.reason").read_text().startswith(job.result.reason)
    assert not (ctx.spool.claimed / "bad").exists()
    assert ctx.log.events("warning") == ["job rejected"]


def test_an_entry_nobody_may_deliver_is_quarantined_before_it_is_recorded(ctx, tmp_path):
    submit_entry(ctx.spool, SCRIPT, {"workdir": str(tmp_path / "missing")}, name="nowhere")
    assert intake(ctx) == 0
    assert ctx.store.by_entry("nowhere") is None
    assert "No such file or directory" in (ctx.spool.failed / "nowhere.reason").read_text()


@pytest.mark.parametrize("partition", [5, ["rescale"], {"name": "rescale"}, True])
def test_a_partition_that_is_not_a_string_quarantines_only_that_entry_naming_the_key(ctx, partition):
    submit_entry(ctx.spool, SCRIPT, {"partition": "rescale"}, name="named")
    submit_entry(ctx.spool, SCRIPT, {"partition": partition}, name="odd")
    submit_entry(ctx.spool, SCRIPT, name="plain")  # no request.json, so no partition
    assert intake(ctx) == 2
    assert ctx.store.by_entry("odd") is None
    reason = (ctx.spool.failed / "odd.reason").read_text().splitlines()[0]
    assert reason == "request.json: partition must be a string"
    assert [ctx.store.by_entry(name).origin.partition for name in ("named", "plain")] == ["rescale", None]


def facts(**changes):
    base = dict(name="e", kind="dir", owner_uid=1000, owner_name="ana", agent_uid=0, request={},
                script=SCRIPT, scheduler_job_id=None, has_manifest=False, workdir_is_dir=True,
                results_dir="/spool/results/e", spool_log="/spool/logs/e.log")
    return EntryFacts(**{**base, **changes})


@pytest.mark.parametrize(("changes", "delivery"), [
    ({"kind": "file"}, "plain"),
    ({}, "plain"),  # a directory entry without a workdir
    ({"request": {"workdir": "/home/ana/run"}, "has_manifest": True}, "relay"),
    ({"request": {"workdir": "/home/ana/run"}, "owner_uid": 0}, "direct"),
])
def test_delivery_of_an_entry(changes, delivery):
    assert delivery_of(facts(**changes)) == delivery


@pytest.mark.parametrize(("changes", "reason"), [
    ({"request": {"workdir": "/home/ana/run"}}, "another user's job must come through `burst-agent relay`"),
    ({"request": {"workdir": ["/tmp"]}}, "request.json: workdir must be a string"),
    ({"request": {"workdir": "/w"}, "owner_uid": 0, "workdir_is_dir": False}, "workdir /w: No such file"),
])
def test_delivery_of_an_entry_nobody_may_deliver_is_refused_with_the_reason(changes, reason):
    with pytest.raises(EntryRejected) as refused:  # the spool's own refusal type: intake catches one
        delivery_of(facts(**changes))
    assert refused.value.reason.startswith(reason) and refused.value.name == "e"


def decided(**changes):
    plan, _warnings = decide(facts(**changes), load_catalogue(CORETYPES), config_from_mapping({}).translate,
                             reconcile_key="burst-t-e", projects={"acct1": "P1"})
    return plan


def test_decide_a_relay_jobs_plan_logs_into_the_spool_and_names_the_workdir():
    plan = decided(request={"workdir": "/home/ana/run"}, has_manifest=True)
    assert (plan.delivery, plan.workdir, plan.inputs_from) == ("relay", "/home/ana/run", None)
    assert (plan.output_dir, plan.stdout_path) == ("/spool/results/e", "/spool/logs/e.log")
    assert (plan.project, plan.hardware, plan.scheduler) == ("P1", "onyx x4 x1", "slurm")


def test_decide_a_direct_jobs_plan_reads_and_writes_the_workdir():
    plan = decided(request={"workdir": "/home/ana/run", "job_id": "41"}, scheduler_job_id="41", owner_uid=0)
    assert (plan.delivery, plan.inputs_from, plan.output_dir) == ("direct", "/home/ana/run", "/home/ana/run")
    assert plan.stdout_path == "/home/ana/run/slurm-41.out"
    assert plan.body["name"].endswith(" [burst-t-e]")
    assert "SLURM_JOB_ID=41 " in plan.body["jobanalyses"][0]["command"]


def test_decide_a_plain_jobs_plan_writes_into_its_results_dir():
    plan = decided(kind="file")
    assert (plan.delivery, plan.workdir, plan.inputs_from) == ("plain", None, None)
    assert plan.stdout_path == "/spool/results/e/output.log"


def test_only_an_entry_whose_outputs_go_there_gets_a_results_dir(ctx, tmp_path):
    # Fails today: facts_of (burst_agent/pipeline/intake.py) calls spool.results_dir(), which mkdirs
    # results/<entry>/, for every entry: direct ones and refused ones too (HEAD made it for others only).
    (tmp_path / "work").mkdir()
    submit_entry(ctx.spool, SCRIPT, {"workdir": str(tmp_path / "work"), "job_id": "5"}, name="direct")
    submit_entry(ctx.spool, SCRIPT, {"workdir": str(tmp_path / "missing")}, name="nowhere")
    assert intake(ctx) == 1
    job = translate_job(ctx, ctx.store.by_entry("direct"))
    assert (job.plan.delivery, job.plan.output_dir) == ("direct", str(tmp_path / "work"))
    assert sorted(p.name for p in ctx.spool.results.iterdir()) == []
