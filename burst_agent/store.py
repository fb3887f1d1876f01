"""Durable job records in SQLite (WAL): jobs, their state history, the upload cache and stage-out progress.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from burst_agent.lifecycle import REMOTE_ACTIVE, TERMINAL, JobState, check_transition

Clock = Callable[[], float]


class StoreError(RuntimeError):
    """The state database cannot be opened or has an unsupported schema."""


class UnknownJob(KeyError):
    """No job record with that id."""


class DuplicateJob(ValueError):
    """A job with the same entry name, reconcile key or remote job id already exists."""


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
)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of `jobs`, decoded.  Times are Unix seconds; price is a Decimal (stored as text)."""

    id: str
    entry: str
    scheduler: str
    scheduler_job_id: str | None
    array_task_id: str | None
    owner_uid: int
    owner_name: str | None
    workdir: str | None
    output_dir: str | None
    stdout_path: str | None
    stderr_path: str | None
    state: JobState
    reconcile_key: str
    remote_job_id: str | None
    coretype: str | None
    cores_per_slot: int | None
    slots: int | None
    price_per_core_hour: Decimal | None
    project: str | None
    input_file_ids: tuple[str, ...]
    request: Mapping[str, Any] | None
    job_spec: Mapping[str, Any] | None
    remote_status: str | None
    remote_status_reason: str | None
    exit_code: int | None
    failure_reason: str | None
    cancel_requested_at: float | None
    create_attempted_at: float | None
    tags_done: bool
    project_done: bool
    submit_attempted_at: float | None
    stop_requested_at: float | None
    log_offset: int
    created_at: float
    updated_at: float
    remote_started_at: float | None
    remote_finished_at: float | None
    transfer_done: int = 0  # bytes of the transfer in progress (stage-in or stage-out), for `status`
    transfer_total: int = 0
    # Relay jobs: the job's own log file (the relay's stdout, e.g. slurm-41.out), how far into the remote
    # log the relay had written it, and when the outputs reached the workdir (relay or delivery).
    relay_log: str | None = None
    relay_log_offset: int = 0
    delivered_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    job_id: str
    from_state: JobState | None
    to_state: JobState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class UploadRecord:
    content_hash: str
    remote_file_id: str
    size: int
    uploaded_at: float


@dataclass(frozen=True, slots=True)
class DownloadRecord:
    job_id: str
    remote_file_id: str
    relative_path: str
    size: int
    md5: str | None
    done: bool


def _json_enc(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _json_dec(value: str | None) -> Any:
    return None if value is None else json.loads(value)


# column -> (encode for SQLite, decode to JobRecord); columns not listed are stored as they are.
_CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "state": (lambda v: JobState(v).value, JobState),
    "input_file_ids": (lambda v: json.dumps(list(v)), lambda v: tuple(json.loads(v))),
    "request": (_json_enc, _json_dec),
    "job_spec": (_json_enc, _json_dec),
    "price_per_core_hour": (lambda v: str(Decimal(v)), Decimal),
    "tags_done": (int, bool),
    "project_done": (int, bool),
}

_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord))
_IMMUTABLE = frozenset({"id", "entry", "reconcile_key", "state", "created_at", "updated_at"})
UPDATABLE: frozenset[str] = frozenset(_COLUMNS) - _IMMUTABLE
_REQUIRED = ("entry", "reconcile_key", "owner_uid")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id(now: float) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32, sorts by creation time."""
    value = (int(now * 1000) & (2**48 - 1)) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _encode(name: str, value: Any) -> Any:
    codec = _CODECS.get(name)
    return codec[0](value) if codec and value is not None else value


# (column index, decoder) for the columns that need decoding; rows come back as plain tuples.
_DECODERS: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
    (index, _CODECS[name][1]) for index, name in enumerate(_COLUMNS) if name in _CODECS
)
_SELECT_JOBS = f"SELECT {', '.join(_COLUMNS)} FROM jobs"


def _record(row: tuple[Any, ...]) -> JobRecord:
    values = list(row)
    for index, decode in _DECODERS:
        if values[index] is not None:
            values[index] = decode(values[index])
    return JobRecord(*values)


class JobStore:
    """The agent's durable ledger; see the module docstring for durability and threading."""

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

    def _migrate(self) -> None:
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this burst-agent "
                    f"({len(MIGRATIONS)}); refusing to open it"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def pragma(self, name: str) -> Any:
        """Read one PRAGMA (e.g. journal_mode) — for doctor and tests."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._lock:
            return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    # -- jobs --------------------------------------------------------------------------------------

    def add_job(self, *, job_id: str | None = None, scheduler: str = "plain", **fields_: Any) -> JobRecord:
        """Record a newly claimed entry in state RECEIVED (with its first history row)."""
        missing = [name for name in _REQUIRED if fields_.get(name) is None]
        if missing:
            raise ValueError(f"add_job: missing {', '.join(missing)}")
        self._check_fields(fields_, UPDATABLE | {"entry", "reconcile_key"})
        now = self._clock()
        row = {
            **{name: _encode(name, value) for name, value in fields_.items()},
            "id": job_id or new_job_id(now),
            "scheduler": scheduler,
            "state": JobState.RECEIVED.value,
            "created_at": now,
            "updated_at": now,
        }
        names = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        try:
            with self._tx() as conn:
                conn.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", row)
                self._history(conn, row["id"], None, JobState.RECEIVED, "claimed from spool", now)
        except sqlite3.IntegrityError as exc:
            raise DuplicateJob(f"job for entry {fields_['entry']!r} already recorded: {exc}") from exc
        return self._must_get(row["id"])

    def transition(
        self, job_id: str, new_state: JobState | str, reason: str = "", **fields_: Any
    ) -> JobRecord:
        """Atomically: check old -> new, update state and fields, append a history row.

        Raises IllegalTransition (row unchanged) or UnknownJob.
        """
        new = JobState(new_state)
        self._check_fields(fields_, UPDATABLE)
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise UnknownJob(job_id)
            old = JobState(row[0])
            check_transition(old, new)
            self._update(conn, job_id, {**fields_, "state": new}, now)
            self._history(conn, job_id, old, new, reason, now)
            return self._must_get(job_id)

    def update(self, job_id: str, **fields_: Any) -> JobRecord:
        """Set non-state fields (e.g. remote_job_id the moment create returns); committed on return."""
        self._check_fields(fields_, UPDATABLE)
        with self._tx() as conn:
            if self._update(conn, job_id, fields_, self._clock()) == 0:
                raise UnknownJob(job_id)
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
        where = f"state IN ({', '.join('?' * len(wanted))})"
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
            f" AND state NOT IN ({', '.join('?' * len(done))}) ORDER BY created_at, id",
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
            f" ({', '.join('?' * len(wanted))}) AND remote_job_id IS NOT NULL ORDER BY created_at, id",
            wanted,
        )
        return [(r[0], r[1], JobState(r[2]), r[3]) for r in rows]

    def relay_watch(self) -> list[tuple[str, str | None]]:
        """(id, scheduler_job_id) of non-terminal relay jobs nobody has asked to cancel (orphan check)."""
        done = sorted(s.value for s in TERMINAL)
        rows = self._query(
            "SELECT id, scheduler_job_id FROM jobs WHERE cancel_requested_at IS NULL"
            f" AND state NOT IN ({', '.join('?' * len(done))})"
            " AND json_extract(job_spec, '$.delivery') = 'relay' ORDER BY created_at, id",
            done,
        )
        return [(r[0], r[1]) for r in rows]

    def active_remote(self) -> list[JobRecord]:
        """Jobs with a remote id in SUBMITTED/QUEUED/RUNNING: what one list call per cycle must cover."""
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
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?)",
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
            conn.execute("INSERT OR REPLACE INTO agent_meta VALUES (?, ?)", (key, value))
        return str(row[0]) if row else None

    # -- stage-out progress ------------------------------------------------------------------------

    def add_downloads(self, job_id: str, files: Iterable[tuple[str, str, int, str | None]]) -> int:
        """Record (remote_file_id, relative_path, size, md5) as pending; known ones kept; returns # new."""
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO downloads (job_id, remote_file_id, relative_path, size, md5)"
                " VALUES (?, ?, ?, ?, ?)",
                [(job_id, fid, rel, int(size), md5) for fid, rel, size, md5 in files],
            )
            return conn.total_changes - before

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

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _check_fields(given: Mapping[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise ValueError(f"not updatable job fields: {', '.join(unknown)}")

    @staticmethod
    def _update(conn: sqlite3.Connection, job_id: str, values: Mapping[str, Any], now: float) -> int:
        row = {name: _encode(name, value) for name, value in values.items()} | {"updated_at": now}
        assignments = ", ".join(f"{name} = :{name}" for name in row)
        try:
            cur = conn.execute(f"UPDATE jobs SET {assignments} WHERE id = :_id", {**row, "_id": job_id})
        except sqlite3.IntegrityError as exc:
            raise DuplicateJob(f"job {job_id}: {exc}") from exc
        return cur.rowcount

    @staticmethod
    def _history(
        conn: sqlite3.Connection, job_id: str, old: JobState | None, new: JobState, reason: str, now: float
    ) -> None:
        conn.execute(
            "INSERT INTO transitions (job_id, from_state, to_state, reason, at) VALUES (?, ?, ?, ?, ?)",
            (job_id, old.value if old else None, new.value, reason, now),
        )

    def _one(self, column: str, value: str) -> JobRecord | None:
        rows = self._query(f"{_SELECT_JOBS} WHERE {column} = ?", (value,))
        return _record(rows[0]) if rows else None

    def _must_get(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record is None:
            raise UnknownJob(job_id)
        return record
