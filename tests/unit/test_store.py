"""Job store, on both backends (SQLite, PostgreSQL): persistence across reopen, atomic transitions with
history, caches, schema; SQLite's WAL."""

import threading
from decimal import Decimal
from pathlib import Path

import pytest
from jobkit import make_job, plan
from pgkit import raw_rows, server

import burst_agent.pgstore as pgstore_module
import burst_agent.store as store_module
from burst_agent.lifecycle import IllegalTransition, JobState
from burst_agent.record import Origin, Remote
from burst_agent.store import MIGRATIONS, DuplicateJob, JobStore, StoreError, UnknownJob, new_job_id
from burst_agent.stores import open_store

S = JobState


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def db(state_location):
    return state_location


@pytest.fixture
def store(db):
    with open_store(db, clock=Clock()) as s:
        yield s


def add(store, entry="e1", **origin):
    return store.add_job(entry=entry, reconcile_key=f"burst-test-{entry}",
                         origin=Origin(owner_uid=1000, **origin))


def walk(store, job_id, *states):
    for state in states:
        store.transition(job_id, state, f"to {state}")


def test_add_and_reopen_keeps_every_field(store, db):
    job = make_job(store, "e1", S.TAGGED, job_plan=plan(price_per_core_hour=Decimal("0.0425")),
                   remote_job_id="AbCdE", scheduler_job_id="42", owner_name="ann", partition="rescale")
    store.close()
    with open_store(db) as again:
        got = again.get(job.id)
    assert got == job
    assert (got.entry, got.origin.scheduler_job_id, got.state) == ("e1", "42", S.TAGGED)
    assert (got.remote_job_id, got.inputs.file_ids, got.origin.partition) == ("AbCdE", ("f1",), "rescale")
    assert got.plan.price_per_core_hour == Decimal("0.0425") and got.plan == plan(
        price_per_core_hour=Decimal("0.0425"))


def test_transition_writes_history_and_enters_the_state_in_same_step(store):
    job = add(store)
    rec = store.transition(job.id, S.TRANSLATED, "translated ok", plan=plan())
    assert (rec.state, rec.plan.coretype, rec.plan.slots) == (S.TRANSLATED, "emerald", 1)
    steps = [(h.from_state, h.to_state, h.reason) for h in store.history(job.id)]
    assert steps == [(None, S.RECEIVED, "claimed from spool"), (S.RECEIVED, S.TRANSLATED, "translated ok")]
    assert rec.updated_at > job.updated_at and rec.entered_at == rec.updated_at


def test_illegal_transition_leaves_row_and_history_unchanged(store):
    job = add(store)
    with pytest.raises(IllegalTransition):
        store.transition(job.id, S.RUNNING, "skip ahead", remote_job_id="zzz")
    assert store.get(job.id) == job
    assert len(store.history(job.id)) == 1


def test_unknown_job_and_fields_a_transition_may_not_change(store):
    with pytest.raises(UnknownJob):
        store.transition("nope", S.FAILED)
    with pytest.raises(UnknownJob):
        store.record_progress("nope", log_offset=1)
    job = add(store)
    with pytest.raises(ValueError, match="entry"):
        store.transition(job.id, S.FAILED, entry="other")
    with pytest.raises(ValueError, match="state"):
        store.record_progress(job.id, state="done")
    assert store.get("nope") is None


def test_progress_and_remote_status_are_recorded_without_a_transition(store):
    job = add(store)
    store.record_progress(job.id, log_offset=7, relay_log="/home/a/slurm-1.out")
    got = store.record_remote(job.id, Remote(status="Executing", started_at=5.0))
    assert (got.progress.log_offset, got.progress.relay_log, got.remote.status) == (7, "/home/a/slurm-1.out",
                                                                                     "Executing")
    assert got.state is S.RECEIVED and len(store.history(job.id)) == 1


def test_cancel_request_is_set_once_and_never_on_a_final_job(store):
    job, done = add(store, "a"), add(store, "b")
    walk(store, done.id, S.FAILED)
    first = store.request_cancel(job.id, 10.0)
    assert store.request_cancel(job.id, 20.0).cancel_requested_at == first.cancel_requested_at == 10.0
    assert store.request_cancel(done.id, 10.0).cancel_requested_at is None


def test_unique_reconcile_key_entry_and_remote_id(store):
    a = add(store, "a")
    with pytest.raises(DuplicateJob):
        store.add_job(entry="b", reconcile_key=a.reconcile_key, origin=Origin(owner_uid=1))
    with pytest.raises(DuplicateJob):
        add(store, "a")
    make_job(store, "c", S.CREATED, remote_job_id="R1")
    with pytest.raises(DuplicateJob):
        make_job(store, "d", S.CREATED, remote_job_id="R1")
    assert store.by_entry("d").remote_job_id is None


def test_non_terminal_and_active_remote_after_reopen(store, db):
    done = add(store, "d")
    running = make_job(store, "r", S.RUNNING, remote_job_id="R9")
    add(store, "f")
    walk(store, done.id, S.FAILED)
    store.close()
    with open_store(db) as again:
        assert [j.entry for j in again.non_terminal()] == ["r", "f"]
        assert [j.remote_job_id for j in again.active_remote()] == ["R9"]
        assert again.by_remote_id("R9").id == running.id
        counts = again.counts_by_state()
    assert (counts[S.FAILED], counts[S.RUNNING], counts[S.RECEIVED], counts[S.DONE]) == (1, 1, 1, 0)


def test_job_counts_read_scheduler_and_partition(store):
    make_job(store, "a", S.RUNNING, partition="rescale")
    add(store, "b")
    assert sorted(store.job_counts_reader()()) == [("plain", "", "received", 1),
                                                   ("slurm", "rescale", "running", 1)]


def test_upload_cache(store, db):
    assert store.cached_upload("sha256:ab") is None
    store.remember_upload("sha256:ab", "FILE1", 1 << 30)
    store.close()
    with open_store(db) as again:
        hit = again.cached_upload("sha256:ab")
        assert (hit.remote_file_id, hit.size) == ("FILE1", 1 << 30)
        again.forget_upload("sha256:ab")
        assert again.cached_upload("sha256:ab") is None


def test_downloads_resume(store):
    job = add(store)
    files = [("F1", "out/a.txt", 3, "md5a"), ("F2", "out/b.txt", 5, None)]
    assert store.add_downloads(job.id, files) == 2
    assert store.add_downloads(job.id, files) == 0
    store.mark_downloaded(job.id, "F1")
    assert [d.remote_file_id for d in store.downloads(job.id, pending_only=True)] == ["F2"]
    assert [d.done for d in store.downloads(job.id)] == [True, False]


def test_wal_mode_and_synchronous_full(tmp_path):
    with JobStore(tmp_path / "s.db") as store:
        assert store.pragma("journal_mode") == "wal"
        assert store.pragma("synchronous") == 2  # FULL


def test_schema_version_is_the_same_on_both_backends(store):
    assert store.schema_version == len(MIGRATIONS) == pgstore_module.FIRST_VERSION + len(
        pgstore_module.MIGRATIONS) - 1


def test_refuses_newer_schema(db):
    open_store(db).close()
    newer = len(MIGRATIONS) + 1
    raw_rows(db, f"PRAGMA user_version={newer}" if isinstance(db, Path) else
             f"UPDATE schema_version SET version = {newer}")
    with pytest.raises(StoreError, match="newer"):
        open_store(db)


def test_writes_from_threads(store):
    jobs = [add(store, f"t{i}") for i in range(8)]
    threads = [threading.Thread(target=walk, args=(store, j.id, S.TRANSLATED, S.STAGING_IN)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counts_by_state()[S.STAGING_IN] == 8


def test_job_ids_sort_by_time():
    assert new_job_id(1.0) < new_job_id(2.0)
    assert len(new_job_id(1.0)) == 26


def test_every_write_is_committed_before_return(store, db):
    make_job(store, "e", S.CREATED, remote_job_id="R7")
    assert raw_rows(db, "SELECT remote_job_id FROM jobs") == [("R7",)]


def test_appended_migration_runs_exactly_once(db, monkeypatch):
    open_store(db).close()
    module = store_module if isinstance(db, Path) else pgstore_module
    monkeypatch.setattr(module, "MIGRATIONS", (*module.MIGRATIONS, "CREATE TABLE extra (x INTEGER)"))
    with open_store(db) as upgraded:
        assert upgraded.schema_version == len(MIGRATIONS) + 1
    with open_store(db) as again:
        assert again.schema_version == len(MIGRATIONS) + 1
    assert raw_rows(db, "SELECT x FROM extra") == []


def test_swap_meta_returns_the_previous_value_and_survives_reopening(db):
    with open_store(db) as first:
        assert first.swap_meta("last_start", "1.5") is None
        assert first.swap_meta("last_start", "2.5") == "1.5"
    with open_store(db) as again:
        assert again.swap_meta("last_start", "3.5") == "2.5"


def test_processes_creating_the_same_database_at_once_all_open_it(db):
    # The first switch to WAL needs an exclusive lock, and SQLite answers "locked" at once (no busy wait)
    # when another connection is creating the same file: the agent and `status` starting together.
    # PostgreSQL: the migrations wait for each other on the write lock.
    errors: list[BaseException] = []
    fresh = [db.with_name(f"race-{n}.db") for n in range(30)] if isinstance(db, Path) else \
        [server().new_database() for _ in range(5)]
    for location in fresh:
        barrier = threading.Barrier(4)

        def open_it(location=location, barrier=barrier):
            barrier.wait()
            try:
                open_store(location).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
