"""The agent's small pure pieces: output patterns, run windows, costs, backoff, the step table."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from burst_agent.agent import Backoff, InFlight
from burst_agent.lifecycle import REMOTE_ACTIVE, TERMINAL, JobState
from burst_agent.pipeline.advance import STEPS
from burst_agent.pipeline.intake import output_paths, reconcile_key
from burst_agent.pipeline.outpaths import expand
from burst_agent.pipeline.watch import run_window
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
    paths = output_paths(None, "pbs", JobRequest(workdir="/home/ana/run", job_id="7", job_name="sim"), "ana")
    assert paths["stdout_path"] == "/home/ana/run/sim.o7"
    slurm = output_paths(None, "slurm", JobRequest(workdir="/w", job_id="7", stderr="e-%j.err"), "ana")
    assert (slurm["stdout_path"], slurm["stderr_path"]) == ("/w/slurm-7.out", "/w/e-7.err")


def test_plain_scripts_log_into_their_results_dir():
    paths = output_paths(Path("/spool/results/x"), "slurm", JobRequest(workdir="/etc"), "ana")
    assert paths["output_dir"] == "/spool/results/x" and paths["workdir"] is None


def test_run_window_takes_first_executing_and_completed():
    statuses = [  # newest first, as the API sends them
        {"status": "Completed", "statusDate": "2026-01-01T02:00:00+00:00"},
        {"status": "Executing", "statusDate": "2026-01-01T01:00:00+00:00"},
        {"status": "Queued", "statusDate": "2026-01-01T00:00:00+00:00"},
    ]
    window = run_window(statuses)
    assert window["remote_finished_at"] - window["remote_started_at"] == 3600


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
    waiting_on_rescale = REMOTE_ACTIVE
    assert set(STEPS) == set(JobState) - TERMINAL - waiting_on_rescale


def test_reconcile_key_and_table():
    assert reconcile_key("hpc1", "20261128-ab") == "burst-hpc1-20261128-ab"
    assert render(("A", "BB"), [("xyz", "1")]) == "A    BB\nxyz  1"


def test_cost_so_far_uses_the_run_window():
    from burst_agent.jobview import cost_so_far

    class Job:
        price_per_core_hour, cores_per_slot, slots = Decimal("0.10"), 4, 2
        remote_started_at, remote_finished_at = 0.0, 1800.0

    assert cost_so_far(Job(), now=99999) == Decimal("0.4000")
