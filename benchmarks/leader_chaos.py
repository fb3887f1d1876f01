"""Leader failover under chaos (issue 15): the leading agent killed -9 every 20-40 s while jobs flow.

Two or three `burst-agent run` processes share one PostgreSQL database and one spool, against the
emulator over HTTP (with a request log). --jobs jobs are dropped into the spool over the run, at the
submission budget's rate; each sleeps a seeded while and writes out.txt, a few KiB whose content follows
from its index. A killer reads the lease row (agent_leader, burst_agent/leadership.py) and kills -9 the
agent holding it every --kill-every seconds (seeded); every agent that dies, killed or by itself, is
started again RESTART_S later, as systemd's Restart=always would.

Failover time, per kill: from the kill (the wall clock just after SIGKILL was sent) to the new leader's
first API request, i.e. the first request the emulator answers once the lease row shows a new epoch (the
old leader is dead and a standby makes no API call, so it is the new leader's). Observed every POLL_S.
Shown beside it: kill -> lease taken (the new epoch seen in the row) and kill -> start recorded
(agent_meta.last_start, the new leader's first write, on its own clock).

Reported: jobs done and lost (not DONE with exit 0), duplicate remote jobs (remote jobs beyond the first
per reconcile key, from the emulator's state), outputs whose md5 differs from the expected content,
kills, failover p50 and max, run time. Budgets are Rescale's defaults x --budget-scale K (remote job
durations / K), as agentbench.budgets_label says; K=1 is the default budgets in real time.

Run:  .venv-ci/bin/python benchmarks/leader_chaos.py [--jobs 300] [--seed 15] [--budget-scale 4]
      [--agents 3] [--quick] [--dsn URL]   (--dsn: a role with CREATEDB, default $BURST_TEST_POSTGRES_DSN)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from agentbench import (
    TOKEN,
    AgentProcess,
    add_budget_scale,
    budgets_label,
    machine,
    scale_flag,
    table,
    write_config,
)

from burst_agent.config import RateLimits
from burst_agent.lifecycle import TERMINAL, JobState
from burst_agent.rescale.emulator import EmulatorHandle, start_emulator
from burst_agent.spool import Spool, submit_entry
from burst_agent.store import SqlLedger
from burst_agent.stores import open_store

POLL_S = 0.02
TICK_S = 0.05
RESTART_S = 1.0  # systemd's RestartSec of a site that restarts the agent quickly
TARGET_S = 10.0  # issue 15: the standby's first step within 10 s of the leader's death
DSN_VAR = "BURST_TEST_POSTGRES_DSN"
_LEASE = ("SELECT holder, epoch, EXTRACT(EPOCH FROM expires_at - now())::float8,"
          " (SELECT value FROM agent_meta WHERE key = 'last_start') FROM agent_leader WHERE id = 1")


@dataclass(frozen=True)
class Settings:
    """One chaos run; durations in real (unscaled) seconds, divided by the budget scale K."""

    jobs: int = 300
    seed: int = 15
    agents: int = 3
    budget_scale: float | None = 4.0
    kill_every_s: tuple[float, float] = (20.0, 40.0)
    max_kills: int = 1000
    remote_s: tuple[float, float] = (40.0, 160.0)
    arrival_per_s: float = 0.0  # 0: the job submission budget's rate (x K)
    timeout_s: float = 1800.0

    @property
    def k(self) -> float:
        return self.budget_scale or 1.0

    @property
    def drop_every_s(self) -> float:
        limits = RateLimits()
        rate = self.arrival_per_s or limits.job_submission_per_hour * limits.target_fraction * self.k / 3600
        return 1.0 / rate


QUICK = Settings(jobs=40, kill_every_s=(12.0, 16.0), max_kills=3, remote_s=(20.0, 60.0), timeout_s=300.0)


# -- the jobs ---------------------------------------------------------------------------------------------


def output_of(i: int, seed: int) -> bytes:
    """What job i's out.txt must hold: 1-8 KiB of its own line, repeated."""
    size = 1024 + (i * 2654435761) % (7 * 1024)
    line = f"leader-chaos job {i} seed {seed}\n".encode()
    return (line * (size // len(line) + 1))[:size]


def script_of(i: int, seed: int, seconds: float) -> str:
    line = output_of(i, seed).split(b"\n", 1)[0].decode()
    return (f"#!/bin/bash\n#SBATCH -J chaos-{i}\n#SBATCH -n 1\n#SBATCH -t 00:30:00\nsleep {seconds:.1f}\n"
            f"yes '{line}' | head -c {len(output_of(i, seed))} > out.txt\n")


@dataclass
class Drop:
    """One job dropped into the spool: its index, spool entry and working directory."""

    index: int
    entry: str
    workdir: Path


# -- the agents -------------------------------------------------------------------------------------------


@dataclass
class Slot:
    """One agent host: its config, its current process, and every exit code it had."""

    name: str
    config: Path
    root: Path
    proc: AgentProcess | None = None
    runs: int = 0
    exits: list[int] = field(default_factory=list)
    restart_at: float | None = None

    def start(self) -> None:
        self.runs += 1
        self.proc = AgentProcess(self.config, self.root / f"agent-{self.runs}.log")
        self.restart_at = None

    @property
    def holder(self) -> str:
        return f"{self.name}:{self.proc.pid}" if self.proc is not None else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.proc.poll() is None


class Fleet:
    """The agents on one state database and one spool; each dead one is started again RESTART_S later."""

    def __init__(self, root: Path, emulator_url: str, state: str, spool: Path, settings: Settings) -> None:
        self.slots = []
        for n in range(settings.agents):
            name = f"agent-{'abcdefgh'[n]}"
            home = root / name
            home.mkdir(parents=True)
            config = write_config(home, emulator_url, budget_scale=settings.budget_scale,
                                  agent={"spool_dir": str(spool), "state_db": state, "agent_name": name})
            self.slots.append(Slot(name, config, home))

    def start(self) -> None:
        for slot in self.slots:
            slot.start()

    def by_holder(self, holder: str) -> Slot | None:
        return next((s for s in self.slots if s.alive() and s.holder == holder), None)

    def supervise(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None:
                continue
            code = slot.proc.proc.poll()
            if code is not None and slot.restart_at is None:
                slot.exits.append(code)
                slot.restart_at = now + RESTART_S
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.start()

    def stop(self) -> None:
        for slot in self.slots:
            if slot.alive():
                slot.proc.stop()  # type: ignore[union-attr]

    def self_exits(self) -> list[int]:
        """Exit codes of agents that died without being killed (75: deposed, stepped down)."""
        return [code for slot in self.slots for code in slot.exits if code != -9]


# -- watching the lease -----------------------------------------------------------------------------------


@dataclass
class Term:
    """One leader's term, as observed: its epoch, holder, and when its steps were first seen."""

    epoch: int
    holder: str
    taken_at: float
    requests_before: int
    first_request_at: float | None = None
    started_at: float | None = None  # its agent_meta.last_start (its own clock)


class Monitor(threading.Thread):
    """Polls the lease row (with last_start) and the emulator's request count every POLL_S."""

    def __init__(self, state: str, emulator: EmulatorHandle) -> None:
        super().__init__(name="lease-monitor", daemon=True)
        self.state, self.emulator = state, emulator
        self.terms: dict[int, Term] = {}
        self.current: Term | None = None
        self.left_s = 0.0  # of the current lease, when last seen
        self._last_start: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.state, autocommit=True) as conn:
            while not self._halt.wait(POLL_S):
                requests = int(self.emulator.stats()["requestsTotal"])
                row = conn.execute(_LEASE).fetchone()
                self.observe(time.time(), requests, str(row[0]), int(row[1]), float(row[2]), row[3])

    def observe(self, now: float, requests: int, holder: str, epoch: int, left_s: float,
                last_start: str | None) -> None:
        self.left_s = left_s
        if holder and epoch not in self.terms:
            self.current = self.terms[epoch] = Term(epoch, holder, now, requests)
        term = self.current
        if term is None:
            return
        if term.first_request_at is None and requests > term.requests_before:
            term.first_request_at = now
        if last_start != self._last_start:
            self._last_start = last_start
            if last_start is not None and term.started_at is None:
                term.started_at = float(last_start)

    def leader(self) -> Term | None:
        """The term of an agent that holds the lease and has made its first API request."""
        term = self.current
        return term if self.left_s > 0 and term is not None and term.first_request_at is not None else None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


@dataclass
class Kill:
    """One kill -9 of the leader, and the next term's steps measured from it (None: never seen)."""

    at: float
    epoch: int
    holder: str
    lease_left_s: float  # of the dead leader's lease at the kill, as last seen
    lease_taken_s: float | None = None
    started_s: float | None = None
    failover_s: float | None = None

    def measure(self, terms: dict[int, Term]) -> None:
        after = sorted(e for e in terms if e > self.epoch)
        if not after:
            return
        term = terms[after[0]]
        self.lease_taken_s = term.taken_at - self.at
        self.started_s = None if term.started_at is None else term.started_at - self.at
        self.failover_s = None if term.first_request_at is None else term.first_request_at - self.at


# -- the run --------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a run came to; `problems` is empty when it met the issue's targets."""

    settings: Settings
    jobs_done: int
    lost: list[str]
    duplicates: list[str]
    md5_mismatches: list[str]
    kills: list[Kill]
    self_exits: list[int]
    remote_jobs: int
    requests: int
    run_s: float
    leftover_entries: int

    def failovers(self) -> list[float]:
        return [k.failover_s for k in self.kills if k.failover_s is not None]

    @property
    def problems(self) -> list[str]:
        found = [f"lost: {j}" for j in self.lost] + [f"duplicate: {d}" for d in self.duplicates]
        found += [f"md5: {m}" for m in self.md5_mismatches]
        for n, kill in enumerate(self.kills, 1):
            steps = (kill.failover_s, kill.started_s)
            if any(s is None or s > TARGET_S for s in steps):
                found.append(f"kill {n} of {kill.holder} (epoch {kill.epoch}): lease taken "
                             f"{_s(kill.lease_taken_s)}, start {_s(kill.started_s)}, "
                             f"first request {_s(kill.failover_s)} after the kill")
        if self.remote_jobs != self.settings.jobs:
            found.append(f"{self.remote_jobs} remote jobs for {self.settings.jobs} jobs")
        if self.leftover_entries:
            found.append(f"{self.leftover_entries} entries still in the spool's incoming/")
        return found

    def render(self) -> str:
        failovers, starts = self.failovers(), [k.started_s for k in self.kills if k.started_s is not None]
        taken = [k.lease_taken_s for k in self.kills if k.lease_taken_s is not None]
        return table(
            ["jobs", "done", "lost", "duplicate remote jobs", "md5 mismatches", "kills",
             "kill -> lease taken (p50, max)", "kill -> start recorded (p50, max)",
             "failover: kill -> first API request (p50, max)", "agents that exited by themselves",
             "run time"],
            [[self.settings.jobs, self.jobs_done, len(self.lost), len(self.duplicates),
              len(self.md5_mismatches), len(self.kills), _spread(taken), _spread(starts), _spread(failovers),
              len(self.self_exits), f"{self.run_s:.0f} s"]])


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s, {max(values):.2f} s" if values else "-"


def say(line: str) -> None:
    print(line, flush=True)


def run(settings: Settings, root: Path, state: str, log: Callable[[str], None] = say) -> Report:
    """One chaos run under `root` on the empty PostgreSQL database `state`."""
    rng = random.Random(settings.seed)
    emulator = start_emulator(root / "emulator", TOKEN, step_seconds=0.5 / settings.k, stop_grace_seconds=1.0,
                              request_log=root / "requests.jsonl")
    open_store(state).close()  # the schema, so that the lease row is there to watch from the start
    spool = Spool(root / "spool").ensure()
    fleet = Fleet(root, emulator.url, state, spool.root, settings)
    monitor = Monitor(state, emulator)
    drops: list[Drop] = []
    kills: list[Kill] = []
    started = time.monotonic()
    try:
        monitor.start()
        fleet.start()
        _chaos(settings, rng, root, spool, fleet, monitor, drops, kills, log)
        time.sleep(1.0)  # the last term's steps, if the run ended right after a takeover
        for kill in kills:
            kill.measure(monitor.terms)
        run_s = time.monotonic() - started
        return _audit(settings, state, emulator, spool, drops, kills, fleet, run_s)
    finally:
        monitor.stop()
        fleet.stop()
        emulator.stop()


def _chaos(settings: Settings, rng: random.Random, root: Path, spool: Spool, fleet: Fleet, monitor: Monitor,
           drops: list[Drop], kills: list[Kill], log: Callable[[str], None]) -> None:
    """Drop the jobs, kill the leader on schedule, restart the dead, until every job ends (or timeout)."""
    durations = [rng.uniform(*settings.remote_s) / settings.k for _ in range(settings.jobs)]
    begin = time.monotonic()
    next_kill = begin + rng.uniform(*settings.kill_every_s)
    deadline = begin + settings.timeout_s
    with open_store(monitor.state) as store:
        finished, checked = 0, 0.0
        while time.monotonic() < deadline and (len(drops) < settings.jobs or finished < settings.jobs):
            now = time.monotonic()
            while len(drops) < settings.jobs and now >= begin + len(drops) * settings.drop_every_s:
                drops.append(_drop(len(drops), settings.seed, durations[len(drops)], root, spool))
            fleet.supervise(now)
            if now - checked >= 1.0:
                finished, checked = _finished(store), now
            leader = monitor.leader()
            if now >= next_kill and len(kills) < settings.max_kills and finished < settings.jobs and leader:
                slot = fleet.by_holder(leader.holder)
                if slot is not None and slot.proc is not None:
                    slot.proc.proc.kill()
                    kills.append(Kill(time.time(), leader.epoch, leader.holder, monitor.left_s))
                    slot.proc.proc.wait()
                    log(f"kill {len(kills)}: {leader.holder} (epoch {leader.epoch}, lease "
                        f"{monitor.left_s:.1f} s left) at {now - begin:.0f} s; {len(drops)} dropped, "
                        f"{finished} finished")
                    next_kill = now + rng.uniform(*settings.kill_every_s)
            time.sleep(TICK_S)


def _drop(i: int, seed: int, seconds: float, root: Path, spool: Spool) -> Drop:
    work = root / "work" / f"j{i}"
    work.mkdir(parents=True)
    entry = submit_entry(spool, script_of(i, seed, seconds), {"workdir": str(work), "job_id": str(1000 + i)})
    return Drop(i, entry, work)


def _finished(store: SqlLedger) -> int:
    return sum(n for state, n in store.counts_by_state().items() if state in TERMINAL)


def _audit(settings: Settings, state: str, emulator: EmulatorHandle, spool: Spool, drops: list[Drop],
           kills: list[Kill], fleet: Fleet, run_s: float) -> Report:
    """Every job DONE exit 0 with its expected out.txt, on exactly one remote job."""
    with emulator.store.lock:
        names = [job.name for job in emulator.store.jobs.values()]
    per_key: dict[str, int] = {}
    for name in names:
        key = name.rsplit("[", 1)[-1].rstrip("]")
        per_key[key] = per_key.get(key, 0) + 1
    lost, md5s, done = [f"job {i}: never dropped" for i in range(len(drops), settings.jobs)], [], 0
    with open_store(state) as store:
        records = [(drop, store.by_entry(drop.entry)) for drop in drops]
    for drop, record in records:
        got = None if record is None else (record.state.value, record.result.exit_code)
        if got != (JobState.DONE.value, 0):
            lost.append(f"job {drop.index} ({drop.entry}): {got}")
            continue
        done += 1
        out = drop.workdir / "out.txt"
        want = hashlib.md5(output_of(drop.index, settings.seed), usedforsecurity=False).hexdigest()
        have = hashlib.md5(out.read_bytes(), usedforsecurity=False).hexdigest() if out.is_file() else "none"
        if have != want:
            md5s.append(f"job {drop.index}: out.txt {have}, expected {want}")
    duplicates = [f"{key}: {n} remote jobs" for key, n in per_key.items() if n > 1]
    requests = int(emulator.stats()["requestsTotal"])
    return Report(settings, done, lost, duplicates, md5s, kills, fleet.self_exits(), len(names), requests,
                  run_s, len(spool.list_incoming()))


# -- the command ------------------------------------------------------------------------------------------


def fresh_database(admin_dsn: str) -> tuple[str, str]:
    """(URL, name) of a new database on the server of `admin_dsn` (a role with CREATEDB)."""
    name = f"burst_chaos_{secrets.token_hex(6)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}")), name


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None, help="jobs over the run (default 300; --quick 40)")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--agents", type=int, default=Settings.agents, choices=(2, 3, 4))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 jobs, 3 kills 12-16 s apart")
    parser.add_argument("--dsn", default=os.environ.get(DSN_VAR, ""), help=f"default ${DSN_VAR}")
    add_budget_scale(parser, "4")
    args = parser.parse_args(argv)
    if not args.dsn:
        print(f"leader_chaos: needs a PostgreSQL role with CREATEDB: --dsn or ${DSN_VAR}")
        return 2
    base = QUICK if args.quick else Settings()
    settings = replace(base, jobs=args.jobs or base.jobs, seed=args.seed, agents=args.agents,
                       budget_scale=args.budget_scale)
    print(f"leader_chaos: {machine()}")
    print(f"leader_chaos: {settings.jobs} jobs, {settings.agents} agents, kill -9 of the leader every "
          f"{settings.kill_every_s[0]:g}-{settings.kill_every_s[1]:g} s, seed {settings.seed}; "
          f"{budgets_label(settings.budget_scale)}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="burst-leader-chaos-"))
    url, name = fresh_database(args.dsn)
    try:
        report = run(settings, root, url)
    finally:
        drop_database(args.dsn, name)
    if report.problems or os.environ.get("BURST_KEEP_TEST_DIRS"):
        print(f"(agent logs, request log and workdirs kept in {root})")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(report.render())
    low, high = settings.remote_s
    print(f"({report.remote_jobs} remote jobs, {report.requests} API requests; a job dropped every "
          f"{settings.drop_every_s:.2f} s; remote durations {low:g}-{high:g} s / {settings.k:g}; "
          f"agent exits by themselves: {report.self_exits or 'none'})")
    print("command: .venv-ci/bin/python benchmarks/leader_chaos.py " + " ".join(
        [f"--jobs {settings.jobs}", f"--seed {settings.seed}", f"--agents {settings.agents}",
         f"--budget-scale {scale_flag(settings.budget_scale)}", *(["--quick"] if args.quick else [])]))
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
