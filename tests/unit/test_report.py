"""`burst-agent report`: a month's remote runs grouped, core-hours, estimated and actual cost (partial
where only some jobs are billed) and their difference, table and CSV."""

from decimal import Decimal

import pytest
import yaml
from jobkit import S, make_job, plan
from stagekit import open_store

from burst_agent import cli
from burst_agent.billing import JobCharge
from burst_agent.record import Remote
from burst_agent.report import cells, total, usage

DEC_1 = 1_764_547_200.0  # 2025-12-01T00:00:00Z


def ran(store, entry: str, *, account: str | None, owner: str, hours: float, at: float = DEC_1 + 86400):
    job = make_job(store, entry, S.STAGING_OUT, job_plan=plan(account=account), owner_name=owner)
    remote = Remote(status="Completed", started_at=at, finished_at=at + hours * 3600)
    return store.record_remote(job.id, remote)


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "state.db") as store:
        ran(store, "a", account="physics", owner="alice", hours=2)  # 4 cores x 2 h x 0.10 = 0.80
        ran(store, "b", account="physics", owner="bob", hours=1)
        ran(store, "c", account=None, owner="bob", hours=5)
        ran(store, "d", account="physics", owner="alice", hours=9, at=DEC_1 - 86400 * 40)  # October
        make_job(store, "e", S.RUNNING)  # still running: not in any month yet
        yield store


def test_runs_ended_in_the_month_are_grouped_by_account_largest_cost_first(store):
    rows = [(r.group, r.jobs, float(r.core_hours), float(r.estimated)) for r in usage(store.jobs(), "2025-12",
                                                                                     "account")]
    assert rows == [("-", 1, 20.0, 2.0), ("physics", 2, 12.0, 1.2)]


def test_the_command_prints_csv_by_user(store, tmp_path, capsys):
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"agent": {"state_db": str(tmp_path / "state.db"),
                                                "spool_dir": str(tmp_path / "spool")}}))
    assert cli.main(["report", "--config", str(config), "--month", "2025-12", "--by", "user", "--csv"]) == 0
    assert capsys.readouterr().out == ("user,jobs,core_hours,estimated_cost,actual_cost,billed_jobs,"
                                       "actual_minus_estimate\nbob,2,24.00,2.40,,0,\nalice,1,8.00,0.80,,0,\n")


def billed(store, *charges: tuple[str, str]) -> None:
    store.record_charges(JobCharge(job, "2025-12", "P1", Decimal(c), Decimal(c), "$") for job, c in charges)


def test_actual_is_the_billed_jobs_sum_marked_partial_and_diff_is_over_those_jobs(store):
    billed(store, ("R-a", "0.95"))
    rows = usage(store.jobs(), "2025-12", "account", store.actual_costs())
    assert [cells(row) for row in [*rows, total(rows)]] == [
        ("-", "1", "20.00", "2.00", "-", "-"),
        ("physics", "2", "12.00", "1.20", "0.95 (1/2)", "+0.15"),  # a's estimate: 0.80
        ("TOTAL", "3", "32.00", "3.20", "0.95 (1/3)", "+0.15")]


def test_every_job_billed_shows_the_actual_alone_in_the_table_and_csv(store, tmp_path, capsys):
    billed(store, ("R-a", "0.70"), ("R-b", "0.40"))
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"agent": {"state_db": str(tmp_path / "state.db"),
                                                "spool_dir": str(tmp_path / "spool")}}))
    assert cli.main(["report", "--config", str(config), "--month", "2025-12"]) == 0
    table = [line.split("  ") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [[cell.strip() for cell in line if cell.strip()] for line in table][1:] == [
        ["-", "1", "20.00", "2.00", "-", "-"], ["physics", "2", "12.00", "1.20", "1.10", "-0.10"],
        ["TOTAL", "3", "32.00", "3.20", "1.10 (2/3)", "-0.10"]]
    assert cli.main(["report", "--config", str(config), "--month", "2025-12", "--csv"]) == 0
    assert "physics,2,12.00,1.20,1.10,2,-0.10\n" in capsys.readouterr().out


def test_a_month_that_is_not_yyyy_mm_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        cli.main(["report", "--month", "2025-13"])
    assert "'2025-13' is not a month as YYYY-MM" in capsys.readouterr().err


def test_the_workspace_summary_follows_the_table(store, tmp_path, capsys):
    store.record_billing_summary("2025-12", {"jobs": 4, "hardwareCharge": 3.2, "totalCharge": 3.5})
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"agent": {"state_db": str(tmp_path / "state.db"),
                                                "spool_dir": str(tmp_path / "spool")}}))
    assert cli.main(["report", "--config", str(config), "--month", "2025-12"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("Rescale's bill of the whole workspace for 2025-12 (every job in it")
    assert last.endswith(": jobs 4, hardware 3.20, total 3.50")
