"""Request accounting: one JSON line per request to a log file, and counters for /_emulator/stats/."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

UNMATCHED = "<unmatched>"


class RequestRecorder:
    """Counts requests by `METHOD /path/template/` and appends JSON lines to an optional log file."""

    def __init__(self, log_path: Path | None) -> None:
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)  # a request's line is written: close() may go on
        self._in_flight = 0
        self.by_template: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self._fh: IO[str] | None = open(log_path, "a", encoding="utf-8", buffering=1) if log_path else None  # noqa: SIM115

    def count(self, method: str, template: str, status: int | None) -> None:
        with self._lock:
            self.by_template[f"{method} {template}"] += 1
            self.by_status[str(status)] += 1

    def begin(self) -> None:
        """A request came in: its line is written by log() once its body has gone out."""
        with self._lock:
            self._in_flight += 1

    def log(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"))
        with self._lock:
            if self._fh is not None:
                self._fh.write(line + "\n")
            self._in_flight -= 1
            self._done.notify_all()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.by_template),
                "responsesByStatus": dict(self.by_status),
                "requestsTotal": sum(self.by_template.values()),
            }

    def close(self, wait_s: float = 2.0) -> None:
        """Close the log once the requests in flight are written (their client may have its answer
        already while the server thread still closes the body), waiting at most `wait_s`."""
        with self._lock:
            self._done.wait_for(lambda: self._in_flight <= 0, timeout=wait_s)
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class RecordingMiddleware:
    """Outermost WSGI layer: times each request and counts the body bytes actually produced."""

    def __init__(self, app: Any, recorder: RequestRecorder) -> None:
        self.app = app
        self.recorder = recorder

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        started = time.monotonic()
        status: list[int] = []
        self.recorder.begin()

        def capture(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[:] = [int(status_line.split(" ", 1)[0])]
            return start_response(status_line, headers, exc_info)

        try:
            body = self.app(environ, capture)
        except BaseException:
            self._count(environ, None)
            self._log(environ, None, 0, started)
            raise
        code = status[0] if status else None
        # Counted before the body goes out: a client that got its answer sees it in /_emulator/stats/.
        self._count(environ, code)
        return _Counted(body, lambda sent: self._log(environ, code, sent, started))

    def _count(self, environ: dict[str, Any], status: int | None) -> None:
        method, template = environ.get("REQUEST_METHOD", ""), environ.get("emulator.rule", UNMATCHED)
        self.recorder.count(method, template, status)

    def _log(self, environ: dict[str, Any], status: int | None, sent: int, started: float) -> None:
        self.recorder.log(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "method": environ.get("REQUEST_METHOD", ""),
                "path": environ.get("PATH_INFO", ""),
                "query": environ.get("QUERY_STRING", ""),
                "template": environ.get("emulator.rule", UNMATCHED),
                "status": status,
                "bytes": sent,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
                "fault": environ.get("emulator.fault"),
            }
        )


class _Counted:
    def __init__(self, body: Iterable[bytes], done: Any) -> None:
        self.body = body
        self.done = done
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.done(self.sent)
