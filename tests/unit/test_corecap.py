"""The cloud core cap: provisioned cores, the admission rule, first-come order, atomic reservations."""

from __future__ import annotations

import threading
import time

import pytest
from jobkit import make_job, plan
from stagekit import open_store

from burst_agent.config import ConfigError, config_from_mapping
from burst_agent.lifecycle import JobState
from burst_agent.pipeline import corecap
from burst_agent.pipeline.corecap import CoreGate, Decision, provisioned_cores, waiting_reason

S = JobState


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "state.db") as s:
        yield s


def job(store, entry, cores, state=S.STAGED, *, slots=1, **changes):
    """A job whose body asks Rescale for `cores` x `slots` (its plan says 1 x 1, as tasks x cpus would)."""
    body = {"jobanalyses": [{"hardware": {"coreType": "aluminum", "coresPerSlot": cores, "slots": slots}}]}
    return make_job(store, entry, state, job_plan=plan(body=body, cores_per_slot=1, slots=1, **changes))


def test_provisioned_cores_are_the_body_hardware_not_the_task_count(store):
    assert provisioned_cores(job(store, "a", 8, slots=2)) == 16


def test_decision_admits_holds_and_refuses():
    assert Decision(needs=8, in_use=24, ahead=0, cap=32).admit
    held = Decision(needs=8, in_use=28, ahead=0, cap=32)
    assert not held.admit and not held.too_big
    assert Decision(needs=40, in_use=0, ahead=0, cap=32).too_big
    assert not Decision(needs=4, in_use=20, ahead=10, cap=32).admit  # older waiting jobs go first
    assert Decision(needs=10**6, in_use=10**6, ahead=0, cap=None).admit


def test_waiting_reason_names_the_numbers():
    text = waiting_reason(Decision(needs=8, in_use=28, ahead=0, cap=32))
    assert text == "waiting for cloud cores: this job needs 8, 28 of the site's 32 are in use"


def test_cores_count_from_the_create_attempt_until_final(store):
    job(store, "running", 8, S.RUNNING)
    job(store, "creating", 4, S.CREATING)
    job(store, "collecting", 2, S.STAGING_OUT)  # the cluster shuts down after Completed
    job(store, "done", 16, S.DONE)
    job(store, "waiting", 32)
    job(store, "held", 32, S.HELD)
    job(store, "uploading", 32, S.STAGING_IN)
    assert CoreGate(store).in_use() == 14


def test_a_reservation_counts_before_the_store_shows_the_create(store):
    gate = CoreGate(store)
    first, second = job(store, "a", 8), job(store, "b", 8)
    assert gate.try_reserve(first, cap=8).admit
    assert not gate.try_reserve(second, cap=8).admit
    store.transition(first.id, S.CREATING)
    gate.release(first.id)  # from here the store counts it, at once (no stale snapshot)
    assert not gate.try_reserve(second, cap=8).admit
    assert gate.in_use() == 8


def test_the_oldest_waiting_job_goes_first_and_a_small_one_cannot_starve_it(store):
    running = job(store, "running", 8, S.RUNNING)
    big, small = job(store, "big", 16), job(store, "small", 8)
    now = [0.0]
    gate = CoreGate(store, clock=lambda: now[0])
    assert not gate.try_reserve(big, cap=16).admit
    assert not gate.try_reserve(small, cap=16).admit  # 8 of 16 are free, but the big job waits first
    store.transition(running.id, S.STAGING_OUT)
    store.transition(running.id, S.DONE)
    now[0] += 5
    assert not gate.try_reserve(small, cap=16).admit
    assert gate.try_reserve(big, cap=16).admit


def test_parallel_workers_never_pass_the_cap_together(store, monkeypatch):
    decide = corecap.decide

    def slow_decide(*args):  # a thread switch between deciding and reserving is where a race would be
        decision = decide(*args)
        time.sleep(0.005)
        return decision

    monkeypatch.setattr(corecap, "decide", slow_decide)
    gate, start, admitted = CoreGate(store, clock=lambda: 0.0), threading.Barrier(16), []
    gate.try_reserve(job(store, "too-big", 9), cap=8)  # reads (and keeps) a snapshot without the jobs below

    def worker(rec):
        start.wait()
        admitted.append(gate.try_reserve(rec, cap=8).admit)

    threads = [threading.Thread(target=worker, args=(job(store, f"j{n}", 4),)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 2


def test_max_cloud_cores_is_null_by_default_and_at_least_one():
    assert config_from_mapping({}).agent.max_cloud_cores is None
    assert config_from_mapping({"agent": {"max_cloud_cores": 32}}).agent.max_cloud_cores == 32
    with pytest.raises(ConfigError, match=r"agent\.max_cloud_cores: 0 is below the minimum 1"):
        config_from_mapping({"agent": {"max_cloud_cores": 0}})
