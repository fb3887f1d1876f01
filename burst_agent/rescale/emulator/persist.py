"""Optional durable emulator state: DATA/state.json, rewritten atomically soon after each change."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

from burst_agent.rescale.emulator.store import FileRecord, Job, StatusEntry, Store

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
FORMAT_VERSION = 1
# Job fields that only mean something inside one process (threads, the child, the stop flag).
_RUNTIME_ONLY = frozenset({"stop_event", "process", "thread"})
_JOB_FIELDS = tuple(f.name for f in fields(Job) if f.name not in _RUNTIME_ONLY)
_FILE_FIELDS = tuple(f.name for f in fields(FileRecord))
_STATUS_LISTS = ("statuses", "cluster_statuses")
_PATHS = ("disk_path", "work_dir")


def _encode(name: str, value: Any) -> Any:
    if name in _STATUS_LISTS:
        return [[s.status, s.date, s.reason] for s in value]
    if name in _PATHS:
        return None if value is None else str(value)
    return value


def _decode(name: str, value: Any) -> Any:
    if name in _STATUS_LISTS:
        return [StatusEntry(*item) for item in value]
    if name in _PATHS:
        return None if value is None else Path(value)
    return value


def snapshot(store: Store) -> dict[str, Any]:
    """Everything a restarted emulator needs, as JSON-ready data (jobs keep their creation order)."""
    with store.lock:
        return {
            "version": FORMAT_VERSION,
            "jobsCreated": store.jobs_created,
            "files": [{n: _encode(n, getattr(f, n)) for n in _FILE_FIELDS} for f in store.files.values()],
            "jobs": [{n: _encode(n, getattr(j, n)) for n in _JOB_FIELDS} for j in store.jobs.values()],
        }


def restore(store: Store, data: dict[str, Any]) -> list[Job]:
    """Load a snapshot into an empty store; returns the submitted jobs that had not completed."""
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"emulator state format {data.get('version')!r} is not {FORMAT_VERSION}")
    with store.lock:
        for item in data["files"]:
            record = FileRecord(**{n: _decode(n, item[n]) for n in _FILE_FIELDS if n in item})
            store.files[record.id] = record
        for item in data["jobs"]:
            job = Job(**{n: _decode(n, item[n]) for n in _JOB_FIELDS if n in item})
            store.jobs[job.id] = job
        store.jobs_created = int(data["jobsCreated"])
        return [job for job in store.jobs.values() if job.submitted and not job.completed]


def load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_atomically(path: Path, text: str) -> None:
    """tmp file, fsync, rename, fsync the dir: a reader (or a crash) sees the old or the new state."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Persister:
    """Writes the store to `path` whenever its snapshot changed, checked every `interval` seconds.

    Changes come from many places (views, job threads) under one lock; comparing snapshots catches all
    of them without hooks. A hard kill loses at most the last `interval`; `stop()` writes a final copy.
    """

    def __init__(self, store: Store, path: Path, interval: float = 0.1) -> None:
        self.store = store
        self.path = path
        self.interval = interval
        self._last = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="emulator-persist", daemon=True)

    def start(self) -> Persister:
        self.flush()
        self._thread.start()
        return self

    def flush(self) -> bool:
        """Write now if anything changed; True if it wrote."""
        text = json.dumps(snapshot(self.store), separators=(",", ":"))
        if text == self._last:
            return False
        write_atomically(self.path, text)
        self._last = text
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except OSError:  # a full disk must not kill the emulator; the next change retries
                log.exception("emulator state not written")

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=5)
        self.flush()
