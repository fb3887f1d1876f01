"""Durable job records in SQLite (WAL): jobs, their state history, the upload cache and stage-out progress.

The ledger's SQL (`SqlLedger`) is shared with the PostgreSQL backend (burst_agent/pgstore.py): a
backend adds its connection, write lock, schema version and migrations; see `stores.open_store`.

Durability: every public write is one transaction committed before the method returns, so the pipeline
can rely on "persist, then do the side effect".  ``synchronous=FULL`` is the default: in WAL mode
NORMAL already survives a process crash (SIGKILL), but may lose the last commits on power loss or a
kernel crash, and this ledger is what stops a job being created or submitted twice (paid cloud
compute).  At our write rate (well under 1000 jobs per hour) one fsync per commit costs nothing.
Pass ``synchronous="NORMAL"`` for bulk loads or benchmarks.

Threads: one connection shared by all threads, serialised by a lock (``check_same_thread=False``).
SQLite serialises writers anyway, the critical sections are short, and one connection keeps
``close()`` simple.  Other processes (``burst-agent status``/``cancel``) may open the same file: WAL
lets them read while the daemon writes, and the busy timeout makes competing writers wait.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from burst_agent.billing import ActualCost, BillingSummary, JobCharge, total_by_job
from burst_agent.ledger import DuplicateJob, UnknownJob
from burst_agent.lifecycle import REMOTE_ACTIVE, TERMINAL, JobState, check_transition
from burst_agent.record import (
    DownloadRecord,
    JobRecord,
    Origin,
    Progress,
    Remote,
    Result,
    TransitionRecord,
    UploadRecord,
    decode_inputs,
    decode_plan,
    encode_inputs,
    encode_plan,
)

__all__ = ["DuplicateJob", "JobRecord", "JobStore", "SqlLedger", "StoreError", "UnknownJob"]

Clock = Callable[[], float]


class StoreError(RuntimeError):
    """The state database cannot be opened or reached, or has an unsupported schema."""


# Migration N (index N-1) takes the schema from user_version N-1 to N.  Append only; never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        entry TEXT NOT NULL UNIQUE,
        scheduler TEXT NOT NULL,
        scheduler_job_id TEXT,
        array_task_id TEXT,
        owner_uid INTEGER NOT NULL,
        owner_name TEXT,
        workdir TEXT,
        output_dir TEXT,
        stdout_path TEXT,
        stderr_path TEXT,
        state TEXT NOT NULL,
        reconcile_key TEXT NOT NULL UNIQUE,
        remote_job_id TEXT UNIQUE,
        coretype TEXT,
        cores_per_slot INTEGER,
        slots INTEGER,
        price_per_core_hour TEXT,
        project TEXT,
        input_file_ids TEXT NOT NULL DEFAULT '[]',
        request TEXT,
        job_spec TEXT,
        remote_status TEXT,
        remote_status_reason TEXT,
        exit_code INTEGER,
        failure_reason TEXT,
        cancel_requested_at REAL,
        create_attempted_at REAL,
        tags_done INTEGER NOT NULL DEFAULT 0,
        project_done INTEGER NOT NULL DEFAULT 0,
        submit_attempted_at REAL,
        stop_requested_at REAL,
        log_offset INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        remote_started_at REAL,
        remote_finished_at REAL
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE transitions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        from_state TEXT,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX transitions_job ON transitions(job_id, seq);
    CREATE TABLE uploads (
        content_hash TEXT PRIMARY KEY,
        remote_file_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        uploaded_at REAL NOT NULL
    );
    CREATE TABLE downloads (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        remote_file_id TEXT NOT NULL,
        relative_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        md5 TEXT,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
        done_at REAL,
        PRIMARY KEY (job_id, remote_file_id)
    );
    """,
    """
    ALTER TABLE jobs ADD COLUMN transfer_done INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN transfer_total INTEGER NOT NULL DEFAULT 0
    """,
    """
    CREATE TABLE agent_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    """
    ALTER TABLE jobs ADD COLUMN relay_log TEXT;
    ALTER TABLE jobs ADD COLUMN relay_log_offset INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN delivered_at REAL
    """,
    # 5: the typed plan (one versioned JSON column), the staged inputs, and recovery flags as states.
    """
    ALTER TABLE jobs ADD COLUMN partition TEXT;
    ALTER TABLE jobs ADD COLUMN entered_at REAL;
    ALTER TABLE jobs ADD COLUMN plan TEXT;
    ALTER TABLE jobs ADD COLUMN inputs TEXT;
    UPDATE jobs SET partition = CASE WHEN json_valid(request) THEN json_extract(request, '$.partition') END,
                    entered_at = updated_at;
    UPDATE jobs SET plan = json_object(
        'v', 1, 'scheduler', scheduler,
        'delivery', COALESCE(json_extract(job_spec, '$.delivery'), 'plain'),
        'workdir', CASE WHEN COALESCE(json_extract(job_spec, '$.delivery'), 'plain') = 'plain' THEN NULL
                        ELSE json_extract(request, '$.workdir') END,
        'inputs_from', workdir, 'output_dir', output_dir, 'stdout_path', stdout_path,
        'stderr_path', stderr_path, 'script', json_extract(job_spec, '$.script'),
        'body', json(json_extract(job_spec, '$.body')), 'coretype', coretype,
        'cores_per_slot', cores_per_slot, 'slots', slots, 'price_per_core_hour', price_per_core_hour,
        'project', project)
    WHERE job_spec IS NOT NULL AND coretype IS NOT NULL AND json_valid(job_spec);
    UPDATE jobs SET inputs = json_object(
        'v', 1, 'file_ids', json(input_file_ids),
        'md5s', json(COALESCE(json_extract(job_spec, '$.input_md5'), '{}')),
        'placement', COALESCE(json_extract(job_spec, '$.placement'), ''),
        'cached', json(COALESCE(json_extract(job_spec, '$.cached_inputs'), '{}')))
    WHERE input_file_ids != '[]' AND json_valid(job_spec);
    UPDATE jobs SET state = 'creating' WHERE state = 'staging_in' AND create_attempted_at IS NOT NULL;
    UPDATE jobs SET state = 'staged' WHERE state = 'staging_in' AND input_file_ids != '[]';
    UPDATE jobs SET state = CASE WHEN submit_attempted_at IS NOT NULL THEN 'submitting'
                                 WHEN project_done THEN 'project_set'
                                 WHEN tags_done THEN 'tagged' ELSE 'created' END
    WHERE state = 'created';
    UPDATE jobs SET state = 'stopping', entered_at = stop_requested_at
    WHERE state IN ('submitted', 'queued', 'running') AND stop_requested_at IS NOT NULL;
    ALTER TABLE jobs DROP COLUMN scheduler;
    ALTER TABLE jobs DROP COLUMN workdir;
    ALTER TABLE jobs DROP COLUMN output_dir;
    ALTER TABLE jobs DROP COLUMN stdout_path;
    ALTER TABLE jobs DROP COLUMN stderr_path;
    ALTER TABLE jobs DROP COLUMN coretype;
    ALTER TABLE jobs DROP COLUMN cores_per_slot;
    ALTER TABLE jobs DROP COLUMN slots;
    ALTER TABLE jobs DROP COLUMN price_per_core_hour;
    ALTER TABLE jobs DROP COLUMN project;
    ALTER TABLE jobs DROP COLUMN input_file_ids;
    ALTER TABLE jobs DROP COLUMN request;
    ALTER TABLE jobs DROP COLUMN job_spec;
    ALTER TABLE jobs DROP COLUMN create_attempted_at;
    ALTER TABLE jobs DROP COLUMN tags_done;
    ALTER TABLE jobs DROP COLUMN project_done;
    ALTER TABLE jobs DROP COLUMN submit_attempted_at;
    ALTER TABLE jobs DROP COLUMN stop_requested_at
    """,
    # 6: capacity failover: which of the plan's hardware choices (0: the first) the remote job is on.
    """
    ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0
    """,
    # 7: Rescale's bill (burst_agent/billing.py): each job's charges per month, the workspace's summary.
    """
    CREATE TABLE actual_costs (
        remote_job_id TEXT NOT NULL,
        month TEXT NOT NULL,
        project TEXT NOT NULL,
        charge TEXT NOT NULL,
        compute_charge TEXT NOT NULL,
        symbol TEXT NOT NULL,
        fetched_at REAL NOT NULL,
        PRIMARY KEY (remote_job_id, month)
    );
    CREATE TABLE billing_summaries (
        month TEXT PRIMARY KEY,
        summary TEXT NOT NULL,
        fetched_at REAL NOT NULL
    )
    """,
    # 8: the leader's lease, PostgreSQL's (burst_agent/leadership.py); SQLite keeps it empty: one agent.
    """
    CREATE TABLE agent_leader (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires_at REAL NOT NULL
    )
    """,
)


# Record field -> {group field: column}: each group of the record is stored as plain columns.
_GROUPS: dict[str, tuple[type, dict[str, str]]] = {
    "origin": (Origin, {f: f for f in ("owner_uid", "owner_name", "scheduler_job_id", "array_task_id",
                                       "partition")}),
    "remote": (Remote, {"status": "remote_status", "reason": "remote_status_reason",
                        "started_at": "remote_started_at", "finished_at": "remote_finished_at",
                        "attempt": "attempt"}),
    "result": (Result, {"exit_code": "exit_code", "reason": "failure_reason"}),
    "progress": (Progress, {f: f for f in ("log_offset", "transfer_done", "transfer_total", "relay_log",
                                           "relay_log_offset", "delivered_at")}),
}
# Record field -> (column, encode, decode) for the fields kept in one column each.
_SINGLE: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = {
    "plan": ("plan", encode_plan, decode_plan),
    "inputs": ("inputs", encode_inputs, decode_inputs),
    "state": ("state", lambda v: JobState(v).value, JobState),
}
# What a transition may change besides the state (the rest is identity, set once).
CHANGEABLE: frozenset[str] = frozenset({"plan", "remote_job_id", "inputs", "remote", "result"})
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _columns_of(name: str) -> tuple[str, ...]:
    if name in _GROUPS:
        return tuple(_GROUPS[name][1].values())
    return (_SINGLE[name][0],) if name in _SINGLE else (name,)


_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord))
_COLUMNS: tuple[str, ...] = tuple(c for name in _FIELDS for c in _columns_of(name))
_SELECT_JOBS = f"SELECT {', '.join(_COLUMNS)} FROM jobs"


def _encode(name: str, value: Any) -> dict[str, Any]:
    """The columns that store record field `name` = value."""
    if name in _GROUPS:
        _kind, cols = _GROUPS[name]
        return {col: getattr(value, attr) for attr, col in cols.items()}
    if name in _SINGLE:
        col, enc, _dec = _SINGLE[name]
        return {col: None if value is None else enc(value)}
    return {name: value}


def _record(row: tuple[Any, ...]) -> JobRecord:
    values, index = {}, 0
    for name in _FIELDS:
        if name in _GROUPS:
            kind, cols = _GROUPS[name]
            values[name] = kind(*row[index:index + len(cols)])
            index += len(cols)
            continue
        value = row[index]
        if name in _SINGLE and value is not None:
            value = _SINGLE[name][2](value)
        values[name] = value
        index += 1
    return JobRecord(**values)


def new_job_id(now: float) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32, sorts by creation time."""
    value = (int(now * 1000) & (2**48 - 1)) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


class Connection(Protocol):
    """What a transaction is handed: a sqlite3.Connection, or pgstore's adapter of a psycopg one."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


def job_counts_sql(json_text: str) -> str:
    """(scheduler, partition, state, count) rows; `json_text` is a backend's SqlLedger.JSON_TEXT."""
    scheduler = json_text.format(column="plan", key="scheduler")
    return (f"SELECT COALESCE({scheduler}, 'plain'), COALESCE(partition, ''), state, COUNT(*)"
            " FROM jobs GROUP BY 1, 2, 3")


def count_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[str, str, str, int]]:
    return [(str(a), str(b), str(c), int(n)) for a, b, c, n in rows]


class SqlLedger:
    """Every ledger operation in the SQL that SQLite and PostgreSQL share (`?` marks, ON CONFLICT).

    A backend sets JSON_TEXT (one JSON field as text) and INTEGRITY_ERRORS, and supplies the hooks
    below: its connection, how a write transaction begins (its write lock: every write is one
    transaction, so a future fencing check can join it), its schema version and migrations.
    """

    JSON_TEXT: ClassVar[str]
    INTEGRITY_ERRORS: ClassVar[tuple[type[Exception], ...]]
    where: str  # the database, for messages (a URL's password redacted)
    _clock: Clock
    _lock: threading.RLock
    _in_tx = False

    # -- what a backend supplies --------------------------------------------------------------------

    def _connection(self) -> Connection:
        raise NotImplementedError

    def _begin(self) -> Connection:
        """Begin a write transaction (taking the backend's write lock); the connection it runs on."""
        raise NotImplementedError

    def _read_version(self, conn: Connection) -> int:
        raise NotImplementedError

    def _write_version(self, conn: Connection, number: int) -> None:
        raise NotImplementedError

    def _migrations(self) -> list[tuple[int, str]]:
        """(the schema version it brings, its script), oldest first."""
        raise NotImplementedError

    def job_counts_reader(self) -> Callable[[], list[tuple[str, str, str, int]]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- transactions, queries, migrations -----------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock:
            conn = self._begin()
            self._in_tx = True
            try:
                yield conn
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._in_tx = False
            conn.execute("COMMIT")

    def _rollback(self, conn: Connection) -> None:
        conn.execute("ROLLBACK")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._connection().execute(sql, tuple(params)).fetchall())

    def _migrate(self) -> None:
        with self._tx() as conn:
            version, steps = self._read_version(conn), self._migrations()
            if version > steps[-1][0]:
                raise StoreError(
                    f"{self.where}: schema version {version} is newer than this burst-agent "
                    f"({steps[-1][0]}); refusing to open it"
                )
            for number, script in steps:
                if number > version:
                    for statement in filter(str.strip, script.split(";")):
                        conn.execute(statement)
                    self._write_version(conn, number)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._read_version(self._connection())

    # -- jobs: the operations the pipeline needs -----------------------------------------------------

    def add_job(self, *, entry: str, reconcile_key: str, origin: Origin, job_id: str | None = None
                ) -> JobRecord:
        """Record a newly claimed entry in state RECEIVED (with its first history row)."""
        now = self._clock()
        row = {"id": job_id or new_job_id(now), "entry": entry, "reconcile_key": reconcile_key,
               **_encode("origin", origin), "state": JobState.RECEIVED.value, "entered_at": now,
               "created_at": now, "updated_at": now}
        names = ", ".join(row)
        try:
            with self._tx() as conn:
                conn.execute(f"INSERT INTO jobs ({names}) VALUES ({_marks(row)})", tuple(row.values()))
                self._history(conn, row["id"], None, JobState.RECEIVED, "claimed from spool", now)
        except self.INTEGRITY_ERRORS as exc:
            raise DuplicateJob(f"job for entry {entry!r} already recorded: {exc}") from exc
        return self._must_get(row["id"])

    def transition(self, job_id: str, new_state: JobState | str, reason: str = "", **changes: Any
                   ) -> JobRecord:
        """Atomically: check old -> new, set the state (and `changes`: plan, remote_job_id, inputs,
        remote, result), append a history row. Raises IllegalTransition (row unchanged) or UnknownJob."""
        new = JobState(new_state)
        self._check_fields(changes, CHANGEABLE)
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise UnknownJob(job_id)
            old = JobState(row[0])
            check_transition(old, new)
            columns = {"state": new.value, "entered_at": now}
            for name, value in changes.items():
                columns |= _encode(name, value)
            self._update(conn, job_id, columns, now)
            self._history(conn, job_id, old, new, reason, now)
            return self._must_get(job_id)

    def record_remote(self, job_id: str, remote: Remote) -> JobRecord:
        """The remote job's status as last seen (no state change)."""
        return self._set(job_id, _encode("remote", remote))

    def record_progress(self, job_id: str, **progress: Any) -> JobRecord:
        """Set some Progress fields (transfer bytes, log offsets, delivered_at)."""
        cols = _GROUPS["progress"][1]
        self._check_fields(progress, frozenset(cols))
        return self._set(job_id, {cols[name]: value for name, value in progress.items()})

    def record_reason(self, job_id: str, reason: str | None) -> JobRecord:
        """Why a job waits (a held job's reason), shown by `status`; no state change."""
        return self._set(job_id, {"failure_reason": reason})

    def request_cancel(self, job_id: str, now: float) -> JobRecord:
        """Mark a non-terminal job for cancellation (once); the agent acts on it at its next tick."""
        done = sorted(s.value for s in TERMINAL)
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET cancel_requested_at = ?, updated_at = ? WHERE id = ?"
                f" AND cancel_requested_at IS NULL AND state NOT IN ({_marks(done)})",
                (now, now, job_id, *done),
            )
            return self._must_get(job_id)

    def get(self, job_id: str) -> JobRecord | None:
        return self._one("id", job_id)

    def by_entry(self, entry: str) -> JobRecord | None:
        return self._one("entry", entry)

    def by_reconcile_key(self, key: str) -> JobRecord | None:
        return self._one("reconcile_key", key)

    def by_remote_id(self, remote_job_id: str) -> JobRecord | None:
        return self._one("remote_job_id", remote_job_id)

    def jobs(
        self, states: Iterable[JobState | str] | None = None, *, with_remote_id: bool = False
    ) -> list[JobRecord]:
        """All records (optionally only those in `states`, or with a remote job id), oldest first."""
        chosen = set(JobState) if states is None else {JobState(s) for s in states}
        wanted = sorted(s.value for s in chosen)
        where = f"state IN ({_marks(wanted)})"
        if with_remote_id:
            where += " AND remote_job_id IS NOT NULL"
        rows = self._query(f"{_SELECT_JOBS} WHERE {where} ORDER BY created_at, id", wanted)
        return [_record(r) for r in rows]

    def owned_by(self, uid: int, *, scheduler_job_id: str | None = None) -> list[JobRecord]:
        """One user's jobs, oldest first (optionally only those of one scheduler job id)."""
        where, params = "owner_uid = ?", [uid]
        if scheduler_job_id is not None:
            where, params = where + " AND scheduler_job_id = ?", [*params, scheduler_job_id]
        rows = self._query(f"{_SELECT_JOBS} WHERE {where} ORDER BY created_at, id", params)
        return [_record(r) for r in rows]

    def non_terminal(self) -> list[JobRecord]:
        """Every job the agent still has to drive (what a restart resumes)."""
        return self.jobs(set(JobState) - TERMINAL)

    def cancel_pending(self) -> list[JobRecord]:
        """Non-terminal jobs with a cancel request (cheap: the agent asks every second)."""
        done = sorted(s.value for s in TERMINAL)
        rows = self._query(
            f"{_SELECT_JOBS} WHERE cancel_requested_at IS NOT NULL"
            f" AND state NOT IN ({_marks(done)}) ORDER BY created_at, id",
            done,
        )
        return [_record(r) for r in rows]

    def active_remote_brief(self) -> list[tuple[str, str, JobState, str | None]]:
        """(id, remote_job_id, state, remote_status) of the active remote jobs: what a poll compares.

        A few columns instead of whole records: 10,000 records cost ~55 MB, these tuples ~2 MB.
        """
        wanted = sorted(s.value for s in REMOTE_ACTIVE)
        rows = self._query(
            f"SELECT id, remote_job_id, state, remote_status FROM jobs WHERE state IN"
            f" ({_marks(wanted)}) AND remote_job_id IS NOT NULL ORDER BY created_at, id",
            wanted,
        )
        return [(r[0], r[1], JobState(r[2]), r[3]) for r in rows]

    def relay_watch(self) -> list[tuple[str, str | None]]:
        """(id, scheduler_job_id) of non-terminal relay jobs nobody has asked to cancel (orphan check)."""
        done = sorted(s.value for s in TERMINAL)
        delivery = self.JSON_TEXT.format(column="plan", key="delivery")
        rows = self._query(
            "SELECT id, scheduler_job_id FROM jobs WHERE cancel_requested_at IS NULL"
            f" AND state NOT IN ({_marks(done)}) AND {delivery} = 'relay' ORDER BY created_at, id",
            done,
        )
        return [(r[0], r[1]) for r in rows]

    def active_remote(self) -> list[JobRecord]:
        """Jobs with a remote id in the remote-active states: what one list call per cycle must cover."""
        return self.jobs(REMOTE_ACTIVE, with_remote_id=True)

    def history(self, job_id: str) -> list[TransitionRecord]:
        rows = self._query(
            "SELECT job_id, from_state, to_state, reason, at FROM transitions WHERE job_id = ? ORDER BY seq",
            (job_id,),
        )
        return [
            TransitionRecord(job_id, JobState(old) if old else None, JobState(new), reason, at)
            for job_id, old, new, reason, at in rows
        ]

    def counts_by_state(self) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        for state, count in self._query("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            counts[JobState(state)] = count
        return counts

    # -- upload cache ------------------------------------------------------------------------------

    def cached_upload(self, content_hash: str) -> UploadRecord | None:
        rows = self._query(
            "SELECT content_hash, remote_file_id, size, uploaded_at FROM uploads WHERE content_hash = ?",
            (content_hash,),
        )
        return UploadRecord(*rows[0]) if rows else None

    def remember_upload(self, content_hash: str, remote_file_id: str, size: int) -> UploadRecord:
        record = UploadRecord(content_hash, remote_file_id, int(size), self._clock())
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO uploads (content_hash, remote_file_id, size, uploaded_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (content_hash) DO UPDATE SET remote_file_id = excluded.remote_file_id,"
                " size = excluded.size, uploaded_at = excluded.uploaded_at",
                (record.content_hash, record.remote_file_id, record.size, record.uploaded_at),
            )
        return record

    def forget_upload(self, content_hash: str) -> None:
        """Drop a cache entry whose remote file turned out to be gone."""
        with self._tx() as conn:
            conn.execute("DELETE FROM uploads WHERE content_hash = ?", (content_hash,))

    # -- agent facts that outlive a process ------------------------------------------------------------

    def swap_meta(self, key: str, value: str) -> str | None:
        """Store `value` under `key`; return what was stored before (None the first time)."""
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM agent_meta WHERE key = ?", (key,)).fetchone()
            conn.execute("INSERT INTO agent_meta (key, value) VALUES (?, ?)"
                         " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
        return str(row[0]) if row else None

    # -- Rescale's bill (billing.py) -----------------------------------------------------------------

    def record_charges(self, charges: Iterable[JobCharge]) -> int:
        """Store what Rescale billed each job per month; a month billed again replaces its figures."""
        now = self._clock()
        rows = [(c.remote_job_id, c.month, c.project, str(c.charge), str(c.compute), c.symbol, now)
                for c in charges]
        if rows:
            with self._tx() as conn:
                conn.executemany(
                    "INSERT INTO actual_costs (remote_job_id, month, project, charge, compute_charge, symbol,"
                    " fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (remote_job_id, month) DO UPDATE"
                    " SET project = excluded.project, charge = excluded.charge, compute_charge ="
                    " excluded.compute_charge, symbol = excluded.symbol, fetched_at = excluded.fetched_at",
                    rows,
                )
        return len(rows)

    def actual_costs(self) -> dict[str, ActualCost]:
        """Remote job id -> what Rescale billed it so far, over every month recorded."""
        rows = self._query("SELECT remote_job_id, month, project, charge, compute_charge, symbol"
                           " FROM actual_costs ORDER BY remote_job_id, month")
        return total_by_job(JobCharge(job, month, project, Decimal(charge), Decimal(compute), symbol)
                            for job, month, project, charge, compute, symbol in rows)

    def record_billing_summary(self, month: str, summary: Mapping[str, Any]) -> None:
        """Keep the workspace billing summary of `month` (YYYY-MM) as Rescale answered it."""
        row = (month, json.dumps(dict(summary)), self._clock())
        with self._tx() as conn:
            conn.execute("INSERT INTO billing_summaries (month, summary, fetched_at) VALUES (?, ?, ?)"
                         " ON CONFLICT (month) DO UPDATE SET summary = excluded.summary,"
                         " fetched_at = excluded.fetched_at", row)

    def billing_summary(self, month: str) -> BillingSummary | None:
        rows = self._query("SELECT month, summary, fetched_at FROM billing_summaries WHERE month = ?",
                           (month,))
        return BillingSummary(rows[0][0], json.loads(rows[0][1]), float(rows[0][2])) if rows else None

    # -- stage-out progress ------------------------------------------------------------------------

    def add_downloads(self, job_id: str, files: Iterable[tuple[str, str, int, str | None]]) -> int:
        """Record (remote_file_id, relative_path, size, md5) as pending; known ones kept; returns # new."""
        rows = [(job_id, fid, rel, int(size), md5) for fid, rel, size, md5 in files]
        if not rows:
            return 0
        with self._tx() as conn:
            cur = conn.executemany(
                "INSERT INTO downloads (job_id, remote_file_id, relative_path, size, md5)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            return int(cur.rowcount)  # both drivers sum it over the rows

    def downloads(self, job_id: str, *, pending_only: bool = False) -> list[DownloadRecord]:
        sql = "SELECT job_id, remote_file_id, relative_path, size, md5, state = 'done' FROM downloads"
        sql += " WHERE job_id = ?" + (" AND state = 'pending'" if pending_only else "")
        rows = self._query(sql + " ORDER BY relative_path", (job_id,))
        return [DownloadRecord(*r[:5], bool(r[5])) for r in rows]

    def mark_downloaded(self, job_id: str, remote_file_id: str) -> None:
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE downloads SET state = 'done', done_at = ? WHERE job_id = ? AND remote_file_id = ?",
                (self._clock(), job_id, remote_file_id),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no download {remote_file_id!r} recorded for job {job_id!r}")

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _check_fields(given: Mapping[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise ValueError(f"not updatable job fields: {', '.join(unknown)}")

    def _update(self, conn: Connection, job_id: str, columns: Mapping[str, Any], now: float) -> int:
        row = {**columns, "updated_at": now}
        assignments = ", ".join(f"{name} = ?" for name in row)
        try:
            cur = conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*row.values(), job_id))
        except self.INTEGRITY_ERRORS as exc:
            raise DuplicateJob(f"job {job_id}: {exc}") from exc
        return int(cur.rowcount)

    @staticmethod
    def _history(
        conn: Connection, job_id: str, old: JobState | None, new: JobState, reason: str, now: float
    ) -> None:
        conn.execute(
            "INSERT INTO transitions (job_id, from_state, to_state, reason, at) VALUES (?, ?, ?, ?, ?)",
            (job_id, old.value if old else None, new.value, reason, now),
        )

    def _set(self, job_id: str, columns: Mapping[str, Any]) -> JobRecord:
        with self._tx() as conn:
            if self._update(conn, job_id, columns, self._clock()) == 0:
                raise UnknownJob(job_id)
            return self._must_get(job_id)

    def _one(self, column: str, value: str) -> JobRecord | None:
        rows = self._query(f"{_SELECT_JOBS} WHERE {column} = ?", (value,))
        return _record(rows[0]) if rows else None

    def _must_get(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record is None:
            raise UnknownJob(job_id)
        return record


def _marks(values: Sized) -> str:
    return ", ".join("?" * len(values))


class JobStore(SqlLedger):
    """The agent's durable ledger in SQLite; see the module docstring for durability and threading."""

    JSON_TEXT = "json_extract({column}, '$.{key}')"
    INTEGRITY_ERRORS = (sqlite3.IntegrityError,)

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Clock = time.time,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise StoreError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.where = str(self.path)
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Create the file private before SQLite does (the -wal/-shm files copy its mode).
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open state database {self.path}: {exc}") from exc
        try:
            self._configure(synchronous.upper(), busy_timeout_ms)
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- setup -------------------------------------------------------------------------------------

    def _configure(self, synchronous: str, busy_timeout_ms: int) -> None:
        mode = self._enable_wal(busy_timeout_ms / 1000)
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); use a local filesystem")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def _enable_wal(self, timeout_s: float) -> str:
        """Switch to WAL, waiting out another process that is creating the same file. The first switch
        needs an exclusive lock, and SQLite reports "locked" at once there (a possible deadlock) instead
        of calling the busy handler: seen when the agent and `burst-agent status` start together."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return str(self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _connection(self) -> sqlite3.Connection:
        return self._conn

    def _begin(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")  # the write lock at once: no upgrade deadlock with a reader
        return self._conn

    def _read_version(self, conn: Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _write_version(self, conn: Connection, number: int) -> None:
        conn.execute(f"PRAGMA user_version={int(number)}")

    def _migrations(self) -> list[tuple[int, str]]:
        return list(enumerate(MIGRATIONS, start=1))

    def pragma(self, name: str) -> Any:
        """Read one PRAGMA (e.g. journal_mode) — for doctor and tests."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._lock:
            return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def job_counts_reader(self) -> Callable[[], list[tuple[str, str, str, int]]]:
        """A reader of (scheduler, partition, state, count) over its own short read-only connection.

        A separate connection keeps metrics scrapes off the daemon's store lock; WAL lets it read while
        the daemon writes; grouping in SQL keeps a scrape cheap however many finished jobs there are.
        """
        return job_counts_reader(self.path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def job_counts_reader(db_path: str | os.PathLike[str]) -> Callable[[], list[tuple[str, str, str, int]]]:
    """(scheduler, partition, state, count) rows of a state database, read-only (see JobStore)."""
    uri = Path(db_path).resolve().as_uri() + "?mode=ro"
    sql = job_counts_sql(JobStore.JSON_TEXT)

    def read() -> list[tuple[str, str, str, int]]:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        try:
            return count_rows(conn.execute(sql))
        finally:
            conn.close()

    return read
