"""Job state machine: transition table, terminal states, Rescale status and failure-reason mapping."""

import ast
import itertools
from pathlib import Path

import pytest

import burst_agent.lifecycle as lifecycle
from burst_agent.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    JobState,
    check_transition,
    failure_reason,
    map_remote_status,
)
from burst_agent.pipeline.collect import final_state

S = JobState
NON_TERMINAL = [s for s in JobState if s not in TERMINAL]

HAPPY_PATH = [
    S.RECEIVED, S.TRANSLATED, S.STAGING_IN, S.STAGED, S.CREATING, S.CREATED, S.TAGGED, S.SUBMITTING,
    S.SUBMITTED,
    S.QUEUED, S.RUNNING, S.STAGING_OUT, S.DONE,
]


def test_happy_path_is_legal():
    for old, new in itertools.pairwise(HAPPY_PATH):
        check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [(S.RECEIVED, S.SUBMITTED), (S.CREATED, S.RUNNING), (S.RUNNING, S.DONE), (S.QUEUED, S.QUEUED),
     (S.STAGING_IN, S.TRANSLATED), (S.RECEIVED, S.RECEIVED)],
)
def test_illegal_transition_raises_with_both_states(old, new):
    with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}") as info:
        check_transition(old, new)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_exits(state):
    assert TRANSITIONS[state] == frozenset()
    for new in JobState:
        with pytest.raises(IllegalTransition):
            check_transition(state, new)


@pytest.mark.parametrize("state", NON_TERMINAL)
def test_cancel_and_failure_from_every_non_terminal_state(state):
    check_transition(state, S.CANCELLED)
    check_transition(state, S.FAILED)


def _reachable(start, table):
    seen, todo = {start}, [start]
    while todo:
        for nxt in table[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_every_state_is_reachable_and_every_job_can_finish():
    assert set(TRANSITIONS) == set(JobState)
    assert _reachable(S.RECEIVED, TRANSITIONS) == set(JobState)
    forward = {state: nxt - {S.FAILED, S.CANCELLED} for state, nxt in TRANSITIONS.items()}
    assert all(S.DONE in _reachable(state, forward) for state in NON_TERMINAL)


@pytest.mark.parametrize(
    ("status", "state"),
    [("Pending", S.SUBMITTED), ("Queued", S.QUEUED), ("WAITING_FOR_QUEUE", S.QUEUED),
     ("Waiting for Cluster", S.QUEUED), ("Started", S.RUNNING), ("Validated", S.RUNNING),
     ("EXECUTING", S.RUNNING), ("Stopping", S.RUNNING), ("FORCE_STOP", S.RUNNING),
     ("Completed", S.STAGING_OUT)],
)
def test_remote_status_mapping(status, state):
    assert map_remote_status(status) is state


@pytest.mark.parametrize("status", [None, "", "Exploded", "Stopped", "Not Started"])
def test_unknown_or_missing_status_is_unknown_never_completed(status):
    assert map_remote_status(status) is None


@pytest.mark.parametrize(
    "reason",
    ["Could not allocate compute resources", "Exceeded max number of restarts", "Exceeds job walltime",
     "JOB FAILED: license error"],
)
def test_failure_reasons_behind_completed(reason):
    assert failure_reason(reason) == reason
    assert final_state(False, reason, 0)[0] is S.FAILED


@pytest.mark.parametrize("reason", [None, "", "Completed successfully", "completed SUCCESSFULLY"])
def test_success_reasons(reason):
    assert failure_reason(reason) is None
    assert final_state(False, reason, 0)[0] is S.DONE


def test_requested_cancel_wins_over_reason():
    assert final_state(True, "Exceeds job walltime", 1)[0] is S.CANCELLED


def test_lifecycle_is_pure():
    tree = ast.parse(Path(lifecycle.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"os", "socket", "requests", "sqlite3", "pathlib", "subprocess"}
