"""The agent's small pure pieces: output patterns, run windows, costs, backoff, the step table."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from jobkit import plan

from burst_agent.agent import Backoff, InFlight
from burst_agent.lifecycle import REMOTE_ACTIVE, TERMINAL, JobState
from burst_agent.outpaths import expand
from burst_agent.pipeline.advance import STEPS
from burst_agent.pipeline.intake import reconcile_key
from burst_agent.pipeline.watch import run_window
from burst_agent.planning import output_paths
from burst_agent.record import Remote
from burst_agent.request import JobRequest
from burst_agent.textable import render


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("slurm-%j.out", "slurm-42.out"), ("%x.o%j", "sim.o42"),
        ("%A_%a-%u.log", "0_3-ana.log"), ("100%%", "100%"),
    ],
)
def test_output_patterns_expand_like_sbatch(pattern, expected):
    values = {"job_id": "42", "job_name": "sim", "array_task_id": "3", "user": "ana"}
    assert expand(pattern, values) == expected


def test_scheduler_jobs_log_into_their_workdir_with_scheduler_default_names():
    _out, stdout, _err = output_paths(None, "pbs", JobRequest(workdir="/home/ana/run", job_id="7",
                                                               job_name="sim"), "ana")
    assert stdout == "/home/ana/run/sim.o7"
    slurm = output_paths(None, "slurm", JobRequest(workdir="/w", job_id="7", stderr="e-%j.err"), "ana")
    assert slurm == ("/w", "/w/slurm-7.out", "/w/e-7.err")


def test_plain_scripts_log_into_their_results_dir():
    paths = output_paths("/spool/results/x", "slurm", JobRequest(workdir="/etc"), "ana")
    assert paths == ("/spool/results/x", "/spool/results/x/output.log", None)


def test_run_window_takes_first_executing_and_completed():
    statuses = [  # newest first, as the API sends them
        {"status": "Completed", "statusDate": "2026-01-01T02:00:00+00:00"},
        {"status": "Executing", "statusDate": "2026-01-01T01:00:00+00:00"},
        {"status": "Queued", "statusDate": "2026-01-01T00:00:00+00:00"},
    ]
    window = run_window(statuses)
    assert window["finished_at"] - window["started_at"] == 3600


def test_backoff_doubles_and_clears():
    now = [0.0]
    backoff = Backoff(clock=lambda: now[0])
    first, second = backoff.failed("j"), backoff.failed("j")
    assert 2.0 <= first <= 2.5 and 4.0 <= second <= 5.0
    assert not backoff.due("j")
    backoff.succeeded("j")
    assert backoff.due("j")


def test_inflight_admits_one_worker_per_job():
    inflight = InFlight()
    assert inflight.try_add("a") and not inflight.try_add("a")
    inflight.discard("a")
    assert inflight.try_add("a")


def test_steps_cover_every_state_the_agent_itself_must_move():
    waiting_on_rescale = REMOTE_ACTIVE  # moved by the watch (and by cancel_step's stops)
    assert set(STEPS) == set(JobState) - TERMINAL - waiting_on_rescale
    assert not set(STEPS) & waiting_on_rescale


def test_reconcile_key_and_table():
    assert reconcile_key("hpc1", "20261128-ab") == "burst-hpc1-20261128-ab"
    assert render(("A", "BB"), [("xyz", "1")]) == "A    BB\nxyz  1"


def test_cost_so_far_uses_the_run_window():
    from burst_agent.jobview import cost_so_far

    job = SimpleNamespace(plan=plan(cores_per_slot=4, slots=2), attempt=0,
                          remote=Remote(started_at=0.0, finished_at=1800.0))
    assert cost_so_far(job, now=99999) == Decimal("0.4000")
