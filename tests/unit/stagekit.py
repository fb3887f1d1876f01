"""Stage tests' kit: a fake Rescale client recording its calls, a recording log, a Context builder."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from burst_agent.config import config_from_mapping
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.context import Catalogue, Context
from burst_agent.rescale.transfer import DownloadResult
from burst_agent.spool import Spool
from burst_agent.store import JobStore

Call = tuple[str, tuple[Any, ...]]

# Two coretypes as GET /coretypes/ lists them (the fields Coretype.from_api reads).
CORETYPES: list[dict[str, Any]] = [
    {"code": "emerald", "name": "Emerald", "price": 0.11, "memory": 5250, "cores": [1, 2, 4, 8, 16, 36],
     "isDeprecated": False, "isPrimary": True},
    {"code": "onyx", "name": "Onyx", "price": 0.07, "memory": 2000, "cores": [1, 2, 4, 8, 18, 36],
     "isDeprecated": False, "isPrimary": False},
]


class FakeClient:
    """A RescaleClient stand-in. Every call is recorded in `calls` as (method name, args): the positional
    arguments, then a dict of the keyword ones if any. `answers[name]` says what a method does: raise
    it (an exception), call it with the arguments (a callable) or return it (anything else; None if
    unset). download_file writes `files[file_id]` to its dest and is recorded as (file id,) alone."""

    def __init__(self, files: dict[str, bytes] | None = None, **answers: Any) -> None:
        self.calls: list[Call] = []
        self.answers = answers
        self.files = files or {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._answer(name, args, kwargs)

    def _answer(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.calls.append((name, args + ((kwargs,) if kwargs else ())))
        answer = self.answers.get(name)
        if isinstance(answer, BaseException):
            raise answer
        return answer(*args, **kwargs) if callable(answer) else answer

    def download_file(self, file_id: str, dest: Path, **_checks: Any) -> DownloadResult:
        self.calls.append(("download_file", (file_id,)))
        data = self.files[file_id]
        Path(dest).write_bytes(data)
        return DownloadResult(Path(dest), len(data), hashlib.md5(data).hexdigest(), 0)

    def names(self) -> list[str]:
        """The methods called, in order."""
        return [name for name, _args in self.calls]


class Log:
    """A structlog-like logger recording (level, event, fields); bind() keeps the same recorder."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def bind(self, **_fields: Any) -> Log:
        return self

    def __getattr__(self, level: str) -> Callable[..., None]:
        if level.startswith("_"):
            raise AttributeError(level)
        return lambda event, **fields: self.lines.append((level, event, fields))

    def events(self, level: str) -> list[str]:
        return [event for lvl, event, _fields in self.lines if lvl == level]


class Clock:
    """A clock the test moves: shared by the store (entered_at) and the Context."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@functools.cache
def _migrated_database() -> bytes:
    """A new state database's bytes, migrated once per test run (the migrations cost ~35 ms a store)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        JobStore(path).close()  # the last close checkpoints the WAL into the file
        return path.read_bytes()


def open_store(path: Path, **options: Any) -> JobStore:
    """JobStore(path): a new file starts as a copy of a migrated database (test_store*.py test the
    migrations themselves); JobStore still checks its schema version, and an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError), os.fdopen(
            os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "wb") as new:
        new.write(_migrated_database())
    return JobStore(path, **options)


def walked(store: JobStore, job_id: str) -> list[JobState]:
    """The states a job went through, in order (its history's to-states)."""
    return [row.to_state for row in store.history(job_id)]


@contextmanager
def stage_context(tmp: Path, client: FakeClient | None = None, config: dict[str, Any] | None = None, *,
                  clock: Clock | None = None) -> Iterator[Context]:
    """A Context on a real JobStore and Spool under `tmp`, the fake client and a recording log."""
    clock = clock or Clock()
    settings = {"agent": {"spool_dir": str(tmp / "spool"), "cluster_name": "t"},
                "staging": {"free_space_margin_bytes": 0}}
    for section, values in (config or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    with open_store(tmp / "state.db", clock=clock) as store:
        yield Context(config=config_from_mapping(settings), client=client or FakeClient(),  # type: ignore[arg-type]
                      store=store, spool=Spool(tmp / "spool").ensure(),
                      catalogue=Catalogue(fetch=lambda: list(CORETYPES)), log=Log(),
                      clock=clock)
