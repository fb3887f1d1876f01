"""The store interface: both backends offer every ledger operation with the same signature; the record
is small and no SQL about jobs lives outside the store."""

import inspect
from dataclasses import fields
from pathlib import Path

import pytest

import burst_agent
from burst_agent.ledger import JobLedger
from burst_agent.pgstore import PostgresStore
from burst_agent.record import JobRecord
from burst_agent.store import JobStore

OPERATIONS = [name for name in vars(JobLedger) if not name.startswith("_")]


@pytest.mark.parametrize("backend", [JobStore, PostgresStore])
def test_each_backend_offers_every_ledger_operation_with_its_signature(backend):
    assert len(OPERATIONS) >= 25
    for name in OPERATIONS:
        assert inspect.signature(getattr(backend, name)) == inspect.signature(getattr(JobLedger, name)), name


def test_the_record_has_at_most_fifteen_fields():
    assert len(fields(JobRecord)) <= 15


def test_no_json_extract_outside_the_store():
    root = Path(burst_agent.__file__).parent
    users = {p.relative_to(root).as_posix() for p in root.rglob("*.py") if "json_extract" in p.read_text()}
    assert users == {"store.py"}
