"""The leader's lease on the database's clock (real PostgreSQL): acquire, renew, expiry, epochs, release;
a deposed holder's fenced write refused in its own transaction; a takeover never overlaps a write."""

import re
import threading
import time

import psycopg
import pytest

from burst_agent.leadership import LeaseRow, Standby, Terms, read_lease
from burst_agent.ledger import Deposed, Fence
from burst_agent.lifecycle import JobState
from burst_agent.pgstore import WRITE_LOCK
from burst_agent.pgurl import PostgresUrl
from burst_agent.record import Origin
from burst_agent.store import StoreError
from burst_agent.stores import open_store

SHORT = Terms(lease_s=0.6, renew_s=0.2)


@pytest.fixture
def url(postgres_url):
    open_store(postgres_url).close()  # the schema, with the lease row (migration 8)
    return PostgresUrl(postgres_url)


def lease_rows(url, *names, terms=SHORT):
    return [LeaseRow(url, name, terms) for name in names]


class Log:
    def __init__(self):
        self.lines = []

    def info(self, event, **_fields):
        self.lines.append(event)

    warning = info


def add(store):
    return store.add_job(entry="e1", reconcile_key="k-e1", origin=Origin(owner_uid=1000))


def test_the_first_agent_takes_the_lease_and_the_next_one_waits(url):
    a, b = lease_rows(url, "a:1", "b:2")
    assert a.acquire() == 1
    assert b.acquire() is None
    seen = b.read()
    assert (seen.holder, seen.epoch) == ("a:1", 1) and 0 < seen.left_s <= 0.6
    assert (read_lease(url).holder, read_lease(url).epoch) == ("a:1", 1)  # what `status` shows


def test_only_the_holder_renews_with_its_epoch_and_a_renewal_extends_the_lease(url):
    a, b = lease_rows(url, "a:1", "b:2")
    a.acquire()
    time.sleep(0.3)
    assert a.renew(1) and a.read().left_s > 0.45
    assert not b.renew(1)
    assert not a.renew(2)  # an epoch it never had


def test_an_ended_lease_goes_to_the_next_agent_with_the_next_epoch(url):
    a, b = lease_rows(url, "a:1", "b:2")
    assert a.acquire() == 1
    time.sleep(0.7)
    assert not a.renew(1)  # over: the old holder cannot extend it any more
    assert b.acquire() == 2
    assert a.acquire() is None and (b.read().holder, b.read().epoch) == ("b:2", 2)


def test_taking_the_lease_again_bumps_the_epoch_and_a_release_hands_it_over_at_once(url):
    a, b = lease_rows(url, "a:1", "b:2", terms=Terms(lease_s=60, renew_s=2))
    assert (a.acquire(), a.acquire()) == (1, 2)
    assert b.acquire() is None
    a.release(2)
    assert b.acquire() == 3


@pytest.mark.parametrize("then", ["taken", "ended"])
def test_a_deposed_holders_fenced_write_is_refused_and_changes_nothing(url, then):
    a, b = lease_rows(url, "a:1", "b:2")
    refused = []
    with open_store(url) as store:
        job = add(store)
        store.fence = Fence("a:1", a.acquire(), 1000, on_refused=lambda: refused.append(True))
        store.record_reason(job.id, "while leading")
        time.sleep(0.7)
        if then == "taken":
            assert b.acquire() == 2
        with pytest.raises(Deposed):
            store.transition(job.id, JobState.TRANSLATED, "too late")
        assert refused == [True]
        store.fence = None  # the connection is left clean: no transaction open
        assert store.get(job.id).state is JobState.RECEIVED
        assert [t.to_state for t in store.history(job.id)] == [JobState.RECEIVED]
        assert store.record_reason(job.id, "unfenced").result.reason == "unfenced"


def test_a_takeover_waits_for_a_write_in_flight(url):
    a, b = lease_rows(url, "a:1", "b:2")
    a.acquire()
    time.sleep(0.7)
    with psycopg.connect(str(url.dsn)) as writer:  # a's last fenced write, still open
        writer.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        with pytest.raises(StoreError, match="lock timeout"):
            b.acquire()  # gives up after 1 s, and will look again
        writer.commit()
    assert b.acquire() == 2


def test_a_paused_leaders_open_transaction_is_ended_by_the_server(url):
    (a,) = lease_rows(url, "a:1")
    with open_store(url) as store, psycopg.connect(str(url.dsn), autocommit=True) as other:
        store.fence = Fence("a:1", a.acquire(), idle_ms=300)
        paused = threading.Thread(target=lambda: _sit_in_transaction(store, 1.2))
        paused.start()
        time.sleep(0.7)
        assert other.execute("SELECT pg_try_advisory_xact_lock(%s)", (WRITE_LOCK,)).fetchone()[0]
        paused.join()
        store.fence = None
        assert add(store).state is JobState.RECEIVED  # the store connects again


def _sit_in_transaction(store, seconds):
    # A write that stops half-way (SIGSTOP, a dead host) holds the write lock: the server ends it.
    with pytest.raises(StoreError, match="idle-in-transaction"), store._tx():
        time.sleep(seconds)


def test_a_standby_waits_out_the_lease_then_takes_it(url):
    a, b = lease_rows(url, "a:1", "b:2")
    a.acquire()
    log = Log()
    standby = Standby(b, SHORT, log)
    won, pause = standby.attempt()
    assert won is None and 0 < pause <= SHORT.renew_s
    standby.attempt()
    assert log.lines == ["standby: another agent leads"]  # once per leader, not per look
    time.sleep(0.7)
    won, _ = standby.attempt()
    assert won is not None and won[0] == 2 and b.read().holder == "b:2"


def test_status_shows_who_leads_with_its_epoch_and_lease_left(url, tmp_path, capsys):
    from burst_agent import cli

    (a,) = lease_rows(url, "node1:42", terms=Terms(lease_s=60, renew_s=2))
    a.acquire()
    (tmp_path / "spool").mkdir()  # owned by this user: status reads the store itself
    config = tmp_path / "agent.yaml"
    config.write_text(f"agent:\n  spool_dir: {tmp_path / 'spool'}\n  state_db: {url.dsn}\n")
    assert cli.main(["status", "--config", str(config)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    shown = re.fullmatch(r"leader: node1:42 \(epoch 1\), lease (\d+\.\d) s left", first)
    assert shown and 50 < float(shown.group(1)) <= 60, first
