"""The PostgreSQL store's own concerns: its URL in the config with the password hidden everywhere, a
dropped connection replaced, writers of other processes queued on the write lock."""

import threading

import psycopg
import pytest
from pgkit import raw_rows

from burst_agent.config import config_from_mapping, effective_dict
from burst_agent.pgstore import WRITE_LOCK
from burst_agent.pgurl import PostgresUrl
from burst_agent.record import Origin
from burst_agent.store import StoreError
from burst_agent.stores import open_store


def add(store, entry="e1"):
    return store.add_job(entry=entry, reconcile_key=f"k-{entry}", origin=Origin(owner_uid=1000))


def test_the_url_in_the_config_never_shows_its_password():
    dsn = "postgresql://ann:s3cr%2Fet@db.example:5432/burst?sslmode=require&password=other-pw"
    config = config_from_mapping({"agent": {"state_db": dsn}})
    url = config.agent.state_db
    assert url == PostgresUrl(dsn) and url.password == "s3cr/et"
    shown = "postgresql://ann:<redacted>@db.example:5432/burst?sslmode=require&password=<redacted>"
    assert str(url) == effective_dict(config)["agent"]["state_db"] == shown
    assert repr(url) == f"PostgresUrl({shown!r})"
    assert url.redact("token s3cr%2Fet, s3cr/et, other-pw") == "token <redacted>, <redacted>, <redacted>"
    assert str(config_from_mapping({"agent": {"state_db": "/var/x.db"}}).agent.state_db) == "/var/x.db"


def test_a_connection_error_names_the_url_but_not_its_password():
    with pytest.raises(StoreError) as caught:  # libpq quotes the bad token: the password
        open_store("postgresql://ann:s3cr%zzet@127.0.0.1:1/burst")
    assert "s3cr" not in str(caught.value) and "<redacted>" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def _drop_connections(url):
    raw_rows(url, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                  " WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_a_dropped_connection_is_replaced_at_the_next_write_and_read(postgres_url):
    with open_store(postgres_url) as store:
        job = add(store)
        _drop_connections(postgres_url)  # a server restart, a failover
        assert store.record_reason(job.id, "held").result.reason == "held"
        _drop_connections(postgres_url)
        assert store.get(job.id).result.reason == "held"


def test_a_write_waits_while_another_process_holds_the_write_lock(postgres_url):
    with open_store(postgres_url) as store, open_store(postgres_url) as reader, \
            psycopg.connect(postgres_url) as other:
        job = add(store)
        other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # held until its commit
        writer = threading.Thread(target=store.record_reason, args=(job.id, "late"))
        writer.start()
        writer.join(0.3)
        assert writer.is_alive() and reader.get(job.id).result.reason is None  # readers never wait
        other.commit()
        writer.join(10)
        assert reader.get(job.id).result.reason == "late"
