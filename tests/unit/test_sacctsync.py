"""sacct-sync: a billed job's actual cost goes into its own Slurm record, never into a reused id's."""

from __future__ import annotations

from decimal import Decimal

import pytest
from jobkit import make_job

from burst_agent.billing import ActualCost
from burst_agent.lifecycle import JobState
from burst_agent.record import Remote
from burst_agent.sacctsync import parse_rows, sync
from burst_agent.store import JobStore

BILLED = {"R-e": ActualCost(Decimal("2.85"), Decimal("2.80"), "$", ("2026-12",))}


@pytest.fixture
def job(tmp_path):
    with JobStore(tmp_path / "state.db", clock=lambda: 1_796_300_000.0) as store:
        done = make_job(store, "e", JobState.DONE, scheduler_job_id="41")
        yield store.record_remote(done.id, Remote("Completed", started_at=1_796_296_000.0,
                                                   finished_at=1_796_299_600.0))


def _sacct(lines: str):
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str:
        calls.append(argv)
        return lines if argv[0] == "sacct" else ""
    return run, calls


def test_the_actual_cost_is_written_beside_the_estimate_into_the_owners_record(job):
    run, calls = _sacct("41|1000|2026-12-03T06:00:00|completed (exit 0) | rescale=r-e\n")
    (written,) = sync([job], BILLED, run, now=1_796_300_000.0)
    assert written[0] == "41" and written[2] and "cost~=0.4000 cost=2.85" in written[1]
    assert calls[-1][:6] == ["sacctmgr", "-i", "modify", "job", "where", "JobID=41"]


def test_another_users_job_a_later_job_with_the_id_or_a_record_already_billed_is_left_alone(job):
    for line in ("41|1001|2026-12-03T06:00:00|x", "41|1000|2026-12-04T06:00:00|x",
                 "41|1000|2026-12-03T06:00:00|completed (exit 0) | cost=2.85"):
        run, calls = _sacct(line + "\n")
        assert sync([job], BILLED, run, now=1_796_300_000.0) == [] and len(calls) == 1


def test_sacct_lines_that_cannot_be_read_are_skipped():
    assert parse_rows("junk\n41|root|2026-12-03T06:00:00|x\n41|0|yesterday|x\n") == []
    assert parse_rows("41|0|2026-12-03T06:00:00|a | b")[0].comment == "a | b"
