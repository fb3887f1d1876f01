"""The leading agent killed -9 three times while 30 jobs flow (benchmarks/leader_chaos.py, small): no job
lost or run twice, every output as written, every failover within 10 s."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pgkit import server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # its helpers: top-level modules

from leader_chaos import TARGET_S, Kill, Monitor, Settings, run

# Budgets x10 (as docs/benchmarks.md labels it): each new leader starts with empty budgets (a restart
# within a minute of the last start), and its backlog must drain within the test's minute.
SMALL = Settings(jobs=30, budget_scale=10.0, kill_every_s=(9.0, 10.0), max_kills=3, remote_s=(40.0, 100.0),
                 arrival_per_s=1.2, timeout_s=75.0)


@pytest.mark.timeout(150)
def test_the_leader_killed_every_9_10_s_loses_nothing_doubles_nothing_and_fails_over_within_10_s(tmp_path):
    report = run(SMALL, tmp_path, server().new_database(), log=lambda _line: None)
    print(f"\n{report.render()}")
    assert report.problems == [], "\n".join(report.problems)
    assert (len(report.kills), report.jobs_done, report.remote_jobs) == (3, 30, 30)
    assert len(report.failovers()) == 3 and max(report.failovers()) <= TARGET_S


def test_a_failover_runs_from_the_kill_to_the_first_request_answered_once_the_lease_has_a_new_epoch():
    monitor = Monitor("postgresql://unused", None)  # fed by hand, never started
    monitor.observe(100.0, 50, "agent-a:1", 1, 7.0, "90.0")
    kill = Kill(101.0, 1, "agent-a:1", 6.0)
    monitor.observe(108.0, 50, "agent-b:2", 2, 8.0, "90.0")  # the lease taken; no request yet
    monitor.observe(108.3, 50, "agent-b:2", 2, 7.7, "108.25")  # its start recorded, on its clock
    monitor.observe(108.4, 53, "agent-b:2", 2, 7.6, "108.25")  # its first request answered
    kill.measure(monitor.terms)
    assert (kill.lease_taken_s, kill.started_s, kill.failover_s) == pytest.approx((7.0, 7.25, 7.4))
    assert monitor.leader() is monitor.terms[2]
