"""Durable job records in PostgreSQL (psycopg 3): store.SqlLedger's SQL over one connection per store.

Writes: every public write is one transaction that first takes a transaction-scoped advisory lock
(WRITE_LOCK), so writers queue as under SQLite's BEGIN IMMEDIATE, in this process and in others
(`burst-agent status`/`cancel`): a check-then-write (`transition`, `swap_meta`) needs neither row
locks nor serialisation retries, and a later fencing check can join the same transaction. Reads run
in autocommit: each sees the last commit and waits for no writer.

Fencing (active/standby, burst_agent/leadership.py): with `fence` set (the leader sets it), every write
transaction also checks, after the write lock, that this agent still holds the lease with its epoch
(FENCE_SQL); if not, it is rolled back before it wrote anything and raises ledger.Deposed. A takeover
takes the write lock too, so it comes strictly before or after each fenced write. A fenced transaction
left idle (its process paused, its host gone) is ended by the server (idle_in_transaction_session_timeout),
so it cannot hold the write lock past the lease.

Threads: one connection shared by the threads, serialised by a lock, as for SQLite. A dropped
connection (server restart, failover) is replaced on the next BEGIN or lone read, which is retried
once (nothing of it reached the server). A failure inside a transaction raises StoreError; the server
rolls it back (or, if COMMIT itself was cut off, it may have committed: the agent's step reads the
store again before doing anything more, so "persist, then the side effect" holds either way).

Secrets: the URL's password (a passfile is better, see docs/ha.md) never shows: messages name the
redacted URL, connection errors are scrubbed of it, and the log scrubs it too.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from burst_agent.ledger import Deposed, Fence
from burst_agent.logsetup import register_secret
from burst_agent.pgurl import PostgresUrl
from burst_agent.store import Clock, SqlLedger, StoreError, count_rows, job_counts_sql

T = TypeVar("T")

WRITE_LOCK = 0x6275727374  # "burst": the advisory lock id every write transaction holds
_BEGIN = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"  # one round trip
# A fenced write: still the lease's holder, with the same epoch, before the lease ends (server clock).
FENCE_SQL = "SELECT 1 FROM agent_leader WHERE id = 1 AND holder = ? AND epoch = ? AND expires_at > now()"
# libpq settings the URL may override: give up connecting after 10 s; notice a dead peer in ~1 min.
CONNECT_DEFAULTS = {"connect_timeout": "10", "application_name": "burst-agent", "keepalives_idle": "30",
                    "keepalives_interval": "10", "keepalives_count": "3"}

# SQLite's migrations 1-5 as one script (PostgreSQL starts there), so versions mean the same in both:
# migration N (index N - FIRST_VERSION) takes the schema from version N-1 to N. Append only, to both
# lists alike (tests/unit/test_store_migration.py compares the schemas).
FIRST_VERSION = 5
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE schema_version (version BIGINT NOT NULL);
    INSERT INTO schema_version VALUES (0);
    CREATE TABLE jobs (
        id TEXT COLLATE "C" PRIMARY KEY,
        entry TEXT NOT NULL UNIQUE,
        scheduler_job_id TEXT,
        array_task_id TEXT,
        owner_uid BIGINT NOT NULL,
        owner_name TEXT,
        state TEXT NOT NULL,
        reconcile_key TEXT NOT NULL UNIQUE,
        remote_job_id TEXT UNIQUE,
        remote_status TEXT,
        remote_status_reason TEXT,
        exit_code BIGINT,
        failure_reason TEXT,
        cancel_requested_at DOUBLE PRECISION,
        log_offset BIGINT NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        remote_started_at DOUBLE PRECISION,
        remote_finished_at DOUBLE PRECISION,
        transfer_done BIGINT NOT NULL DEFAULT 0,
        transfer_total BIGINT NOT NULL DEFAULT 0,
        relay_log TEXT,
        relay_log_offset BIGINT NOT NULL DEFAULT 0,
        delivered_at DOUBLE PRECISION,
        partition TEXT,
        entered_at DOUBLE PRECISION,
        plan TEXT,
        inputs TEXT
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE transitions (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        from_state TEXT,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX transitions_job ON transitions(job_id, seq);
    CREATE TABLE uploads (
        content_hash TEXT PRIMARY KEY,
        remote_file_id TEXT NOT NULL,
        size BIGINT NOT NULL,
        uploaded_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE downloads (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        remote_file_id TEXT NOT NULL,
        relative_path TEXT COLLATE "C" NOT NULL,
        size BIGINT NOT NULL,
        md5 TEXT,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
        done_at DOUBLE PRECISION,
        PRIMARY KEY (job_id, remote_file_id)
    );
    CREATE TABLE agent_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    # 6: capacity failover: which of the plan's hardware choices (0: the first) the remote job is on.
    """
    ALTER TABLE jobs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0
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
        fetched_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (remote_job_id, month)
    );
    CREATE TABLE billing_summaries (
        month TEXT PRIMARY KEY,
        summary TEXT NOT NULL,
        fetched_at DOUBLE PRECISION NOT NULL
    )
    """,
    # 8: the leader's lease (burst_agent/leadership.py): who leads, its epoch, until when (server clock).
    """
    CREATE TABLE agent_leader (
        id BIGINT PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    INSERT INTO agent_leader VALUES (1, '', 0, to_timestamp(0))
    """,
)


@lru_cache(maxsize=512)
def _native(sql: str) -> str:
    """The shared SQL's `?` marks as psycopg's `%s` (the SQL has no `?` or `%` of its own)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Pg:
    """A psycopg connection that takes the shared SQL; a lost connection raises StoreError."""

    def __init__(self, raw: psycopg.Connection[Any], where: str) -> None:
        self.raw, self.where = raw, where

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        # Without parameters the text goes as it is (simple protocol: _BEGIN's two statements at once).
        return self._run(lambda: self.raw.execute(_native(sql), parameters) if parameters
                         else self.raw.execute(sql))

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        return self._run(lambda: (cursor.executemany(_native(sql), parameters), cursor)[1])

    def _run(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except (psycopg.OperationalError, psycopg.InterfaceError,
                psycopg.errors.IdleInTransactionSessionTimeout) as exc:  # the server ended the session
            raise StoreError(f"state database {self.where}: {_one_line(str(exc))}") from exc


def _one_line(message: str) -> str:
    return " ".join(message.split())  # libpq's messages run over lines (a hint, a second address)


def _open(url: PostgresUrl, **settings: str) -> _Pg:
    """A new autocommit connection (libpq `settings` over CONNECT_DEFAULTS, the URL's own win); errors
    (which may quote the URL) are scrubbed of its password."""
    try:
        given = conninfo_to_dict(url.dsn)
        defaults = {k: v for k, v in {**CONNECT_DEFAULTS, **settings}.items() if k not in given}
        return _Pg(psycopg.connect(url.dsn, autocommit=True, **defaults), str(url))
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach state database {url}: {_one_line(url.redact(str(exc)))}") from None


def _schema_version(conn: _Pg) -> int:
    if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])


class PostgresStore(SqlLedger):
    """The agent's durable ledger in PostgreSQL; see the module docstring for writes and threads."""

    JSON_TEXT = "({column}::jsonb ->> '{key}')"
    INTEGRITY_ERRORS = (psycopg.IntegrityError,)
    fence: Fence | None = None  # the leader's epoch every write checks (module docstring); None: unfenced

    def __init__(self, url: PostgresUrl | str, clock: Clock = time.time) -> None:
        self.url = url if isinstance(url, PostgresUrl) else PostgresUrl(url)
        if self.url.password:
            register_secret(self.url.password)
        self.where = str(self.url)
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        self._conn = _open(self.url)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _connection(self) -> _Pg:
        if self._conn.raw.closed and not self._in_tx:  # psycopg closes a connection it found broken
            if self._closed:
                raise StoreError(f"state database {self.where}: the store is closed")
            self._conn = _open(self.url)
        return self._conn

    def _once_more(self, run: Callable[[_Pg], T]) -> T:
        """run(connection), once more on a new one if that connection turned out lost: only for what
        sent nothing the server kept (a BEGIN, a read outside a transaction)."""
        conn = self._connection()
        try:
            return run(conn)
        except StoreError:
            if not conn.raw.closed or self._closed:
                raise
            return run(self._connection())

    def _begin(self) -> _Pg:
        fence = self.fence
        begin = _BEGIN if fence is None else (
            f"BEGIN; SET LOCAL idle_in_transaction_session_timeout = {int(fence.idle_ms)};"
            f" SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        conn = self._once_more(lambda conn: (conn.execute(begin), conn)[1])
        if fence is None:
            return conn
        try:
            held = conn.execute(FENCE_SQL, (fence.holder, fence.epoch)).fetchone() is not None
        except BaseException:
            self._rollback(conn)
            raise
        if not held:
            self._rollback(conn)
            fence.refused()
            raise Deposed(f"state database {self.where}: {fence.holder} (epoch {fence.epoch}) no longer"
                          " leads; the write was refused")
        return conn

    def _rollback(self, conn: _Pg) -> None:
        if not conn.raw.closed:
            with contextlib.suppress(StoreError):  # the error being raised says more
                conn.execute("ROLLBACK")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._in_tx:
                return super()._query(sql, params)
            return self._once_more(lambda conn: list(conn.execute(sql, tuple(params)).fetchall()))

    def _read_version(self, conn: _Pg) -> int:  # type: ignore[override]
        return _schema_version(conn)

    def _write_version(self, conn: _Pg, number: int) -> None:  # type: ignore[override]
        conn.execute("UPDATE schema_version SET version = ?", (number,))

    def _migrations(self) -> list[tuple[int, str]]:
        return list(enumerate(MIGRATIONS, start=FIRST_VERSION))

    def job_counts_reader(self) -> Callable[[], list[tuple[str, str, str, int]]]:
        """(scheduler, partition, state, count) rows over a connection of its own per scrape (off the
        store's lock; ~10 ms to connect locally)."""
        url, sql = self.url, job_counts_sql(self.JSON_TEXT)

        def read() -> list[tuple[str, str, str, int]]:
            conn = _open(url)
            try:
                return count_rows(conn.execute(sql).fetchall())
            finally:
                conn.raw.close()

        return read

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.raw.close()


@dataclass(frozen=True)
class Probe:
    """What `burst-agent doctor` reports of a PostgreSQL store."""

    server: str  # e.g. "15.8"
    schema_version: int  # 0: no schema yet (the agent creates it at start)
    newest: int  # the schema version this burst-agent writes
    writable: bool  # may write the tables (or, without a schema yet, create them)


def probe(url: PostgresUrl) -> Probe:
    """Reach the server and read its schema version and privileges, changing nothing (StoreError if
    it cannot be reached)."""
    conn = _open(url)
    try:
        server = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        version = _schema_version(conn)
        check = ("has_table_privilege('jobs', 'SELECT, INSERT, UPDATE, DELETE')" if version
                 else "COALESCE(has_schema_privilege(current_schema(), 'CREATE'), false)")
        writable = bool(conn.execute(f"SELECT {check}").fetchone()[0])
    finally:
        conn.raw.close()
    return Probe(server, version, FIRST_VERSION + len(MIGRATIONS) - 1, writable)
