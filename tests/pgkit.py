"""PostgreSQL for the tests: CI's cluster ($BURST_TEST_POSTGRES_DSN), else a throwaway one started
here on first use, and a fresh database per test (dropped after it: tests/conftest.py)."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

DSN_VAR = "BURST_TEST_POSTGRES_DSN"  # a role with CREATEDB; .ci/postgres-setup.sh writes one
STORE_VAR = "BURST_TEST_STORE"  # "postgres": the e2e rig keeps its agent's state in PostgreSQL
SETUP = Path(__file__).resolve().parent.parent / ".ci" / "postgres-setup.sh"


class PostgresServer:
    """Makes databases on one server (through `admin_dsn`) and drops them again."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.made: list[str] = []

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self) -> str:
        """The URL of a new, empty database (~25 ms)."""
        name = f"burst_t_{secrets.token_hex(6)}"
        self._admin(f"CREATE DATABASE {name}")
        self.made.append(name)
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path=f"/{name}"))

    def drop_all(self) -> None:
        """Drop every database made so far; FORCE ends what still uses one (an agent left running)."""
        while self.made:
            self._drop(self.made.pop())

    def _drop(self, name: str) -> None:
        # A server process of no role (an autovacuum worker, on a cluster not set up by
        # .ci/postgres-setup.sh) makes FORCE fail for a non-superuser until it ends: seconds at most.
        for attempt in range(20):
            try:
                return self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                if attempt == 19:
                    raise
                time.sleep(0.5)


def _start_cluster(port: int = 0) -> tuple[str, dict[str, str]]:
    """A cluster of its own in a temporary directory (~1.5 s), on `port` (0: any free one); its DSN and
    the setup's environment."""
    root = Path(tempfile.mkdtemp(prefix="burst-test-pg-"))
    env = {**os.environ, "BURST_PG_DIR": str(root), "BURST_PG_PORT": str(port),
           "BURST_PG_DSN_FILE": str(root / "cluster.dsn")}
    done = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"{SETUP} failed (set {DSN_VAR} to use a running server):\n{done.stderr}")
    return done.stdout.strip(), env


def _stop_cluster(env: dict[str, str]) -> None:
    subprocess.run(["bash", str(SETUP), "stop"], env=env, capture_output=True, check=False)
    shutil.rmtree(env["BURST_PG_DIR"], ignore_errors=True)


_shared: dict[str, PostgresServer] = {}


def server() -> PostgresServer:
    """The test run's server: $BURST_TEST_POSTGRES_DSN's, else a cluster started now, stopped at exit."""
    if "server" not in _shared:
        dsn = os.environ.get(DSN_VAR, "")
        if not dsn:
            dsn, env = _start_cluster()
            atexit.register(_stop_cluster, env)
        _shared["server"] = PostgresServer(dsn)
    return _shared["server"]


def drop_databases() -> None:
    """After each test: drop the databases it made (nothing to do if it made none)."""
    if "server" in _shared:
        _shared["server"].drop_all()


def e2e_state(root: Path) -> Path | str:
    """Where an e2e agent keeps its state: a SQLite file under `root`, or with BURST_TEST_STORE=postgres
    a fresh PostgreSQL database."""
    backend = os.environ.get(STORE_VAR, "sqlite")
    if backend not in ("sqlite", "postgres"):
        raise ValueError(f"{STORE_VAR} must be sqlite or postgres, not {backend!r}")
    return server().new_database() if backend == "postgres" else root / "state.db"


def raw_rows(location: Path | str, sql: str) -> list[tuple[Any, ...]]:
    """One statement on a store's database behind its back (committed), for either backend."""
    if isinstance(location, Path):
        conn = sqlite3.connect(location)
        try:
            rows = conn.execute(sql).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    with psycopg.connect(location, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []
