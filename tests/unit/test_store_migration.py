"""Migration 5: an agent upgraded mid-job resumes every job at the step it had reached; PostgreSQL's
migrations make the schema SQLite's make."""

import json
import sqlite3

import pytest
from pgkit import raw_rows

from burst_agent.lifecycle import JobState
from burst_agent.store import MIGRATIONS, JobStore
from burst_agent.stores import open_store

S = JobState
SPEC = {"body": {"name": "j", "jobanalyses": []}, "script": "echo hi\n", "delivery": "relay",
        "input_md5": {"a.txt": "0" * 32}, "placement": "mv x y", "cached_inputs": {"F9": "sha256:k"}}
# (old state, old flags) -> the state that now stands for them
CASES = [
    ("staging_in", {}, S.STAGING_IN),
    ("staging_in", {"input_file_ids": '["F1"]'}, S.STAGED),
    ("staging_in", {"input_file_ids": '["F1"]', "create_attempted_at": 5.0}, S.CREATING),
    ("created", {}, S.CREATED),
    ("created", {"tags_done": 1}, S.TAGGED),
    ("created", {"tags_done": 1, "project_done": 1}, S.PROJECT_SET),
    ("created", {"tags_done": 1, "submit_attempted_at": 6.0}, S.SUBMITTING),
    ("running", {"stop_requested_at": 7.0}, S.STOPPING),
    ("running", {}, S.RUNNING),
]


def _old_db(path, state, flags):
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:4]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version=4")
    row = {"id": "J1", "entry": "e", "scheduler": "slurm", "owner_uid": 1000, "state": state,
           "reconcile_key": "k", "created_at": 1.0, "updated_at": 2.0, "coretype": "emerald",
           "cores_per_slot": 4, "slots": 2, "price_per_core_hour": "0.1", "output_dir": "/r",
           "stdout_path": "/spool/logs/e.log", "job_spec": json.dumps(SPEC),
           "request": json.dumps({"workdir": "/home/a/run", "partition": "rescale"}), **flags}
    marks = ", ".join("?" * len(row))
    conn.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({marks})", list(row.values()))
    conn.commit()
    conn.close()


@pytest.mark.parametrize(("state", "flags", "now"), CASES)
def test_old_flags_become_states(tmp_path, state, flags, now):
    _old_db(tmp_path / "db", state, flags)
    with JobStore(tmp_path / "db") as store:
        job = store.get("J1")
    assert job.state is now
    assert job.entered_at == flags.get("stop_requested_at", 2.0)


def test_old_columns_become_the_plan_and_the_inputs(tmp_path):
    _old_db(tmp_path / "db", "staging_in", {"input_file_ids": '["F1", "F9"]'})
    with JobStore(tmp_path / "db") as store:
        job = store.get("J1")
    plan = job.plan
    assert (plan.delivery, plan.workdir, plan.hardware) == ("relay", "/home/a/run", "emerald x4 x2")
    assert (job.plan.script, job.plan.body, job.origin.partition) == ("echo hi\n", SPEC["body"], "rescale")
    inputs = job.inputs
    assert (inputs.file_ids, inputs.cached, inputs.placement) == (("F1", "F9"), {"F9": "sha256:k"}, "mv x y")


# (table, column or index, "not null" / "null" / "index") of a store's schema; a primary key is NOT NULL.
SCHEMA_SQL = {
    "sqlite": "SELECT m.name, p.name, CASE WHEN p.\"notnull\" OR p.pk THEN 'not null' ELSE 'null' END"
              " FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'"
              " AND m.name NOT LIKE 'sqlite%' UNION SELECT tbl_name, name, 'index' FROM sqlite_master"
              " WHERE type = 'index' AND sql IS NOT NULL",
    "postgres": "SELECT table_name, column_name, CASE is_nullable WHEN 'NO' THEN 'not null' ELSE 'null' END"
                " FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name <> 'schema_version'"
                " UNION SELECT tablename, indexname, 'index' FROM pg_indexes"
                " WHERE schemaname = current_schema() AND indexdef NOT LIKE 'CREATE UNIQUE%'",
}


def test_both_backends_make_the_same_tables_columns_and_indexes(tmp_path, postgres_url):
    open_store(tmp_path / "s.db").close()
    open_store(postgres_url).close()
    sqlite_schema = {tuple(map(str, row)) for row in raw_rows(tmp_path / "s.db", SCHEMA_SQL["sqlite"])}
    postgres_schema = {tuple(map(str, row)) for row in raw_rows(postgres_url, SCHEMA_SQL["postgres"])}
    assert len(sqlite_schema) > 40
    assert sqlite_schema == postgres_schema

