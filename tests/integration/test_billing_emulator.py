"""Actual cost over HTTP: two jobs run on the emulator in two projects (and a job that is not ours), the
reconciliation reads each project's billing CSV and the workspace summary, and `burst-agent report`
shows the bill beside the estimate; a token without billing access (403) is asked once, then left."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime
from decimal import Decimal
from importlib import resources
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from emukit import FAST_STEP, TEST_TOKEN
from jobkit import S, make_job, plan

from burst_agent import cli
from burst_agent.billing import month_of
from burst_agent.billing_sync import BillingSync
from burst_agent.config import config_from_mapping
from burst_agent.record import Remote
from burst_agent.rescale.emulator import start_emulator
from burst_agent.rescale.emulator.bills import WORKSPACE_ID
from burst_agent.rescale.errors import NotFoundError, ValidationError
from burst_agent.store import JobStore

PRICE = 3600  # per core-hour: a core-second costs 1.00, so a short run bills whole cents
BILLING_PATHS = r"/api/v2/organizations/[^/]+/workspaces/[^/]+/billing/.*"


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event))


@pytest.fixture
def emulator(tmp_path):
    """The emulator with emerald priced at PRICE (conftest's `rescale_client` uses this one)."""
    coretypes = json.loads(resources.files("burst_agent").joinpath("data/coretypes.json").read_text())
    emerald = next(coretype for coretype in coretypes if coretype["code"] == "emerald")
    emerald.update(price=PRICE, lowPriorityPrice=str(PRICE / 2))
    (tmp_path / "coretypes.json").write_text(json.dumps(coretypes))
    handle = start_emulator(tmp_path / "emulator", TEST_TOKEN, step_seconds=FAST_STEP,
                            coretypes_file=tmp_path / "coretypes.json")
    yield handle
    handle.stop()


def _run(client, project: str) -> str:
    body = {"name": f"job in {project}", "billingPriorityValue": "INSTANT", "jobanalyses": [
        {"analysis": {"code": "user_included", "version": "0"}, "command": "sleep 0.5",
         "hardware": {"coreType": "emerald", "coresPerSlot": 2}}]}
    job_id = client.create_job(body)["id"]
    client.set_job_project(job_id, project, organization="acme")
    client.submit_job(job_id)
    return job_id


def _window(client, job_id: str) -> tuple[float, float]:
    deadline = time.monotonic() + 30
    while not (client.job_statuses(job_id)[0]["status"] == "Completed" or time.monotonic() > deadline):
        time.sleep(0.05)
    [run] = client.list_runs(job_id)
    return tuple(datetime.fromisoformat(run[k]).timestamp() for k in ("dateStarted", "dateCompleted"))


@pytest.fixture
def ctx(rescale_client, tmp_path):
    """Two of our jobs ran (one per project) and one that is not ours; the store knows ours."""
    ours = {project: _run(rescale_client, project) for project in ("emuPrj", "bgtPrj")}
    stranger = _run(rescale_client, "emuPrj")
    settings = {"agent": {"organization": "acme", "workspace": WORKSPACE_ID,
                          "state_db": str(tmp_path / "s.db"), "spool_dir": str(tmp_path / "spool")}}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(settings))
    store = JobStore(tmp_path / "s.db")
    for project, remote_id in ours.items():
        job = make_job(store, project, S.DONE, remote_job_id=remote_id,
                       job_plan=plan(project=project, cores_per_slot=2, price_per_core_hour=Decimal(PRICE)))
        start, end = _window(rescale_client, remote_id)
        store.record_remote(job.id, Remote(status="Completed", started_at=start, finished_at=end))
    _window(rescale_client, stranger)
    yield SimpleNamespace(config=config_from_mapping(settings), client=rescale_client, store=store, log=Log(),
                          clock=time.time, ours=ours, stranger=stranger, file=tmp_path / "agent.yaml")
    store.close()


def test_reconciliation_fills_in_our_jobs_actual_cost_and_the_report_shows_it(ctx, capsys):
    result = BillingSync().cycle(ctx)
    assert (result.projects, result.failed) == (["bgtPrj", "emuPrj"], [])
    costs = ctx.store.actual_costs()
    assert set(costs) == set(ctx.ours.values())  # not the stranger's, though it is on emuPrj's bill
    for job in ctx.store.jobs():
        start, end = job.remote.started_at, job.remote.finished_at
        estimate = Decimal(PRICE * 2 * (end - start) / 3600)
        assert abs(costs[job.remote_job_id].charge - estimate) <= Decimal("0.01")
        assert costs[job.remote_job_id].charge >= Decimal("0.50")  # 2 cores x at least 0.5 s
    summary = ctx.store.billing_summary(month_of(time.time())).summary
    assert summary["jobs"] == 3 and summary["id"] == WORKSPACE_ID

    assert cli.main(["report", "--config", str(ctx.file), "--by", "project", "--csv"]) == 0
    rows = {line.split(",")[0]: line.split(",") for line in capsys.readouterr().out.splitlines()[1:]}
    for project, remote_id in ctx.ours.items():
        _group, jobs, _hours, estimated, actual, billed, diff = rows[project]
        assert (jobs, billed, Decimal(actual)) == ("1", "1", costs[remote_id].charge)
        assert abs(Decimal(diff)) <= Decimal("0.01")
        assert abs(Decimal(actual) - Decimal(estimated)) <= Decimal("0.01")


def test_a_token_without_billing_access_is_refused_once_and_not_asked_again(ctx, emulator):
    emulator.set_faults(fault_403=1.0, path_pattern=BILLING_PATHS)
    sync = BillingSync()
    assert sync.cycle(ctx).skipped == "no billing access"
    asked = _billing_requests(emulator)
    assert sync.cycle(ctx).skipped == "no billing access"
    assert (asked, _billing_requests(emulator)) == (1, 1)
    assert ctx.store.actual_costs() == {}
    assert [event for level, event in ctx.log.lines if level == "warning"] == [
        "no billing access: actual cost is not reconciled until tomorrow (UTC) or an agent restart"]
    assert ctx.client.list_coretypes()  # only the bill is refused


def _billing_requests(emulator) -> int:
    """The billing requests answered 403 (the fault hits only those paths)."""
    return emulator.stats()["faultsInjected"].get("fault_403", 0)


def test_the_emulators_bill_follows_the_jobs_tier_and_the_document_shape(rescale_client):
    body = {"name": "economy", "billingPriorityValue": "ON_DEMAND", "jobanalyses": [
        {"analysis": {"code": "user_included", "version": "0"}, "command": "true",
         "hardware": {"coreType": "emerald", "coresPerSlot": 1}}]}
    job_id = rescale_client.create_job(body)["id"]
    rescale_client.set_job_project(job_id, "bgtPrj", organization="acme")
    rescale_client.submit_job(job_id)
    _window(rescale_client, job_id)
    text = rescale_client.project_billing_csv("acme", WORKSPACE_ID, "bgtPrj")
    lines = list(csv.DictReader(text.splitlines()))
    assert [(r["Type"], r["ID"], r["Unit Charge/Hour"]) for r in lines[:-1]] == [
        ("Compute", job_id, "$1800.0000"), ("Storage", job_id, "$0.4842"),
        ("Rescale Platform", job_id, "$0.0000")]
    assert text.splitlines()[-1].startswith(",,,,,,,,,,,,,,Total,,,,,$")
    with pytest.raises(NotFoundError):
        rescale_client.project_billing_csv("acme", "04-0000000000", "bgtPrj")
    with pytest.raises(ValidationError, match="startMonth"):
        rescale_client.workspace_billing("acme", WORKSPACE_ID, start=(2024, 13), end=(2024, 1))
