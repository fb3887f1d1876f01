"""Active/standby agents on one PostgreSQL database: a lease row on the server's clock, epochs that fence.

The lease is one row, `agent_leader(id = 1, holder, epoch, expires_at)` (migration 8). A standby reads
it and, once `expires_at` has passed, takes it in one UPDATE that bumps `epoch`; the leader renews it
every `agent.leader_renew_s` for `agent.leader_lease_s` more, by the database's clock (`now()`), so no
two hosts' clocks are compared. Taking the lease holds the store's write lock (pgstore.WRITE_LOCK), so a
takeover falls strictly between two of the old leader's write transactions, each of which checks the
lease in the same transaction (pgstore's fence): a deposed leader's next write is refused before the
API call it would lead to. Its API calls are refused too, by its own clock: the lease is over, locally,
a little before the server ends it (`Terms.valid_until`), and every HTTP request asks first.

A leader that cannot renew in time, or finds the lease taken, steps down at once: it exits (EXIT_DEPOSED)
and systemd starts it again, as a standby. Every fact lives in the database, so that is a crash, which
the agent is built to survive; the next leader resumes every job from its state. See docs/ha.md.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import requests.adapters

from burst_agent.config import AgentConfig, Config
from burst_agent.ledger import Deposed, Fence
from burst_agent.metrics import serve, standby_registry
from burst_agent.pgstore import WRITE_LOCK, _open, _Pg
from burst_agent.pgurl import PostgresUrl
from burst_agent.sdnotify import Notifier
from burst_agent.store import StoreError

EXIT_DEPOSED = 75  # EX_TEMPFAIL: Restart=on-failure starts the agent again, as a standby
GUARD_MARGIN_S = 0.5  # the local lease ends this much before the server's (at most renew_s)
EXPIRY_SLACK_S = 0.02  # a standby looks again this soon after the lease should have ended
RETRY_S = 0.25  # a standby that just lost a race for the lease (or waited on the write lock)
WATCH_S = 0.1  # how often the leader compares its clock with the lease's end

# -- pure core ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    """How long a lease lasts and how often the leader renews it (agent.leader_lease_s, _renew_s)."""

    lease_s: float = 8.0
    renew_s: float = 2.0

    @classmethod
    def of(cls, agent: AgentConfig) -> Terms:
        return cls(agent.leader_lease_s, agent.leader_renew_s)

    @property
    def idle_ms(self) -> int:
        """How long a fenced transaction may sit idle before the server ends it (releasing the write
        lock): well inside a lease, so a paused or vanished leader never blocks a takeover."""
        return max(100, int((self.lease_s - self.renew_s) / 2 * 1000))

    def valid_until(self, sent_at: float) -> float:
        """The local (monotonic) end of a lease renewed by a statement sent at `sent_at`: the server
        started its lease later than that, so this one ends first."""
        return sent_at + self.lease_s - min(GUARD_MARGIN_S, self.renew_s)

    def standby_wait(self, left_s: float) -> float:
        """A standby's pause before it looks again, with `left_s` of the leader's lease left: a renewal
        interval, or just past the lease's end (so a takeover comes at most a lease after the death)."""
        return max(0.0, min(self.renew_s, left_s + EXPIRY_SLACK_S))


@dataclass(frozen=True)
class LeaseView:
    """The lease row as the server saw it: who holds it, its epoch, seconds left (negative: over)."""

    holder: str
    epoch: int
    left_s: float

    @property
    def held(self) -> bool:
        return bool(self.holder) and self.left_s > 0

    def describe(self) -> str:
        if not self.holder:
            return "none yet (no agent has led)"
        if self.held:
            return f"{self.holder} (epoch {self.epoch}), lease {self.left_s:.1f} s left"
        return f"none: the lease of {self.holder} (epoch {self.epoch}) ended {-self.left_s:.1f} s ago"


def holder_name(agent_name: str = "") -> str:
    """This process's name in the lease: agent.agent_name (default: the hostname), colon, pid."""
    return f"{agent_name or socket.gethostname()}:{os.getpid()}"


# -- the lease row (thin PostgreSQL shell) ------------------------------------------------------------

_SESSION = "SET statement_timeout = '2s'"
_READ = "SELECT holder, epoch, EXTRACT(EPOCH FROM expires_at - now())::float8 FROM agent_leader WHERE id = 1"
# Takes the write lock (so it comes between two fenced writes), waiting 1 s at most for it.
_ACQUIRE_BEGIN = f"BEGIN; SET LOCAL lock_timeout = '1s'; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
_ACQUIRE = ("UPDATE agent_leader SET holder = ?, epoch = epoch + 1,"
            " expires_at = now() + ? * interval '1 second'"
            " WHERE id = 1 AND (expires_at < now() OR holder = ?) RETURNING epoch")
_RENEW = ("UPDATE agent_leader SET expires_at = now() + ? * interval '1 second'"
          " WHERE id = 1 AND holder = ? AND epoch = ? AND expires_at > now() RETURNING epoch")
_RELEASE = "UPDATE agent_leader SET expires_at = now() WHERE id = 1 AND holder = ? AND epoch = ?"


class LeaseRow:
    """The lease row over a connection of its own (never queued behind the store's lock); its
    statements give up after 2 s, its TCP after 3 s unanswered. StoreError when unreachable."""

    def __init__(self, url: PostgresUrl, holder: str, terms: Terms) -> None:
        self.url, self.holder, self.terms = url, holder, terms
        self._conn: _Pg | None = None

    def _db(self) -> _Pg:
        if self._conn is None or self._conn.raw.closed:
            conn = _open(self.url, connect_timeout="2", tcp_user_timeout="3000",
                         application_name="burst-agent lease")
            conn.execute(_SESSION)
            self._conn = conn
        return self._conn

    def read(self) -> LeaseView:
        row = self._db().execute(_READ).fetchone()
        if row is None:
            raise StoreError(f"state database {self.url}: no lease row (agent_leader); schema too old?")
        return LeaseView(str(row[0]), int(row[1]), float(row[2]))

    def acquire(self) -> int | None:
        """The new epoch if this agent holds the lease now (the old one ended, or was its own), else None."""
        conn = self._db()
        try:
            conn.execute(_ACQUIRE_BEGIN)
            row = conn.execute(_ACQUIRE, (self.holder, self.terms.lease_s, self.holder)).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            if not conn.raw.closed:
                with contextlib.suppress(StoreError):
                    conn.execute("ROLLBACK")
            raise
        return int(row[0]) if row else None

    def renew(self, epoch: int) -> bool:
        """Extend this agent's unexpired lease by a lease from now; False: it is over, or another's."""
        row = self._db().execute(_RENEW, (self.terms.lease_s, self.holder, epoch)).fetchone()
        return row is not None

    def release(self, epoch: int) -> None:
        """End this agent's lease now (a clean stop): a standby takes it at its next look."""
        self._db().execute(_RELEASE, (self.holder, epoch))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.raw.close()


def read_lease(url: PostgresUrl) -> LeaseView | None:
    """The lease as `burst-agent status` shows it; None before migration 8."""
    conn = _open(url)
    try:
        if conn.execute("SELECT to_regclass('agent_leader')").fetchone()[0] is None:
            return None
        row = conn.execute(_READ).fetchone()
    finally:
        conn.raw.close()
    return None if row is None else LeaseView(str(row[0]), int(row[1]), float(row[2]))


# -- the leader: renew, watch, refuse, step down --------------------------------------------------------


class _Guarded(requests.adapters.BaseAdapter):
    """A transport adapter that asks `check` (which raises Deposed) before each request it sends."""

    def __init__(self, inner: requests.adapters.BaseAdapter, check: Callable[[], None]) -> None:
        super().__init__()
        self.inner, self.check = inner, check

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.check()
        return self.inner.send(request, *args, **kwargs)

    def close(self) -> None:
        self.inner.close()


class Leadership:
    """This agent's lease while it leads: renewed on one thread, its end watched on another; `lose`
    (once) calls `on_lost`, which in the daemon exits the process (step_down)."""

    def __init__(self, row: LeaseRow, terms: Terms, epoch: int, sent_at: float, *,
                 on_lost: Callable[[str], None], log: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.row, self.terms, self.epoch = row, terms, epoch
        self.valid_until = terms.valid_until(sent_at)
        self._on_lost, self._log, self._clock = on_lost, log, clock
        self._ended = threading.Event()  # lost or released: nothing passes any more
        self._ending = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._failing = False

    @property
    def holder(self) -> str:
        return self.row.holder

    def valid(self) -> bool:
        return not self._ended.is_set() and self._clock() < self.valid_until

    def lose(self, why: str) -> None:
        """The lease is gone: from now on nothing passes; `on_lost(why)` is called once."""
        with self._ending:
            if self._ended.is_set():
                return
            self._ended.set()
        self._on_lost(why)

    def check(self) -> None:
        """Before an API call: raise Deposed (having stepped down) unless the lease still holds."""
        if not self.valid():
            self.lose("the lease ended before an API call")
            raise Deposed(f"{self.holder} (epoch {self.epoch}) no longer leads: API call refused")

    def fence(self) -> Fence:
        return Fence(self.holder, self.epoch, self.terms.idle_ms,
                     on_refused=lambda: self.lose("a write fenced by this agent's epoch was refused"))

    def renew_once(self) -> bool:
        """One renewal; False if it did not go through (then the next is tried sooner)."""
        sent = self._clock()
        try:
            renewed = self.row.renew(self.epoch)
        except StoreError as exc:
            if not self._failing and self._log is not None:
                self._log.warning("cannot renew the lease; stepping down when it ends unless a renewal"
                                  " goes through", error=str(exc),
                                  lease_left_s=round(self.valid_until - self._clock(), 1))
            self._failing = True
            return False
        if not renewed:
            self.lose("the lease was over or taken when renewed")
            return False
        self.valid_until = max(self.valid_until, self.terms.valid_until(sent))
        if self._failing and self._log is not None:
            self._log.info("lease renewed again")
        self._failing = False
        return True

    def watch_once(self) -> None:
        if not self._ended.is_set() and self._clock() >= self.valid_until:
            self.lose("the lease ended before it could be renewed")

    def _renew_loop(self) -> None:
        pause = self.terms.renew_s
        while not self._stop.wait(pause) and not self._ended.is_set():
            pause = self.terms.renew_s if self.renew_once() else min(self.terms.renew_s, RETRY_S * 2)

    def _watch_loop(self) -> None:
        while not self._stop.wait(WATCH_S):
            self.watch_once()

    def start(self) -> Leadership:
        for name, loop in (("lease-renew", self._renew_loop), ("lease-watch", self._watch_loop)):
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def attach(self, ctx: Any) -> None:
        """Fence the context's store and guard its client's HTTP session by this lease."""
        ctx.store.fence = self.fence()
        guard_session(ctx.client.session, self.check)

    def release(self) -> None:
        """A clean stop: no more renewals, calls or writes from here; the lease ends now, for a standby."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.terms.renew_s + 3)
        with self._ending:
            held = not self._ended.is_set()
            self._ended.set()
        if held:
            with contextlib.suppress(StoreError):
                self.row.release(self.epoch)
        self.row.close()


def guard_session(session: Any, check: Callable[[], None]) -> None:
    """Every request of a requests.Session asks `check` first (each mounted adapter wrapped)."""
    for prefix, adapter in list(session.adapters.items()):
        session.adapters[prefix] = _Guarded(adapter, check)


def step_down(log: Any, holder: str, epoch: int, why: str) -> NoReturn:
    """The daemon's on_lost: say why, and exit at once (no step finishes, no socket is cleaned up: the
    next leader owns them now); systemd's Restart= starts this agent again as a standby."""
    log.error("stepping down: this agent no longer leads; exiting to start again as a standby",
              holder=holder, epoch=epoch, reason=why)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_DEPOSED)


# -- the standby: wait for the lease ----------------------------------------------------------------


class Standby:
    """Looks at the lease and takes it once it has ended; logs each change of leader."""

    def __init__(self, row: LeaseRow, terms: Terms, log: Any, prepare: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.row, self.terms, self.log, self._clock = row, terms, log, clock
        self._prepare: Callable[[], None] | None = prepare
        self._seen: tuple[str, int] | None = None
        self._error = ""

    def attempt(self) -> tuple[tuple[int, float] | None, float]:
        """((epoch, when the winning statement was sent) or None, seconds until the next attempt)."""
        if self._prepare is not None:
            self._prepare()  # e.g. create or upgrade the schema: the lease row comes with it
            self._prepare = None
        view = self.row.read()
        if view.held and view.holder != self.row.holder:
            if self._seen != (view.holder, view.epoch):
                self._seen = (view.holder, view.epoch)
                self.log.info("standby: another agent leads", leader=view.holder, epoch=view.epoch,
                              lease_left_s=round(view.left_s, 1), me=self.row.holder)
            return None, self.terms.standby_wait(view.left_s)
        sent = self._clock()
        epoch = self.row.acquire()
        return ((epoch, sent) if epoch is not None else None), RETRY_S

    def wait(self, stopping: threading.Event, tick: Callable[[], Any] = lambda: None,
             tick_s: float = 3600.0) -> tuple[int, float] | None:
        """Attempt until this agent holds the lease ((epoch, sent_at)) or `stopping` is set (None)."""
        while not stopping.is_set():
            tick()
            try:
                won, pause = self.attempt()
            except StoreError as exc:
                if str(exc) != self._error:
                    self._error = str(exc)
                    self.log.warning("standby: cannot read the lease; retrying", error=self._error)
                won, pause = None, self.terms.renew_s
            if won is not None:
                return won
            stopping.wait(min(pause, tick_s))
        return None


def stand_by(config: Config, notifier: Notifier, log: Any) -> Leadership | None:
    """`burst-agent run` with a PostgreSQL state_db: wait as a standby (no API call, no spool intake,
    no relay socket; /metrics says burst_agent_leader 0), then lead. The Leadership once this agent
    holds the lease; None if SIGTERM/SIGINT came first."""
    from burst_agent.stores import open_store

    agent = config.agent
    url = agent.state_db
    if not isinstance(url, PostgresUrl):
        raise TypeError("stand_by needs a PostgreSQL agent.state_db")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, lambda *_: log.info("standby: config changes apply when it starts again"))
    terms = Terms.of(agent)
    row = LeaseRow(url, holder_name(agent.agent_name), terms)
    standby = Standby(row, terms, log, prepare=lambda: open_store(url).close())
    metrics = serve(standby_registry(), config.metrics.listen_host, config.metrics.listen_port) \
        if config.metrics.enabled else None
    interval = notifier.watchdog_interval()
    log.info("standby: waiting for the lease", me=row.holder, lease_s=terms.lease_s, renew_s=terms.renew_s)
    notifier.ready(f"standby {row.holder}: waiting for the lease")
    try:
        won = standby.wait(stopping, tick=notifier.watchdog, tick_s=interval / 2 if interval else 3600.0)
    finally:
        if metrics is not None:
            metrics.stop()
    if won is None:
        row.close()
        log.info("standby stopped")
        return None
    epoch, sent = won
    log.info("leading: this agent holds the lease", me=row.holder, epoch=epoch)
    return Leadership(row, terms, epoch, sent, log=log,
                      on_lost=lambda why: step_down(log, row.holder, epoch, why)).start()
