"""Fault injection middleware: 429 with Retry-After, 500, latency, dropped connections, truncation,
overlong bodies, lost replies (the request is carried out, then the connection drops before the answer);
and a WAN: a bandwidth cap per connection, file downloads that take no ranges."""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NoReturn

from werkzeug.wrappers import Response

PROBABILITIES = (
    "fault_429", "fault_500", "fault_drop", "fault_truncate", "fault_lost_reply", "fault_overrun",
    "fault_401", "fault_403",
)
# What a file download does with a Range: honour it; ignore it (200 and the whole file, while a HEAD
# still says Accept-Ranges: bytes); none (ignore it, and say Accept-Ranges: none).
RANGE_MODES = ("honour", "ignore", "none")
OVERRUN_BYTES = 1 << 20
REFUSALS = {500: "A server error occurred.", 401: "Invalid token.",
            403: "You do not have permission to perform this action."}


@dataclass(frozen=True)
class FaultSettings:
    """Probabilities in [0, 1]; faults only hit requests matching `methods`, `path_prefix` and
    `path_pattern` (a regular expression the whole path must match; empty: any path)."""

    fault_429: float = 0.0
    fault_500: float = 0.0
    fault_drop: float = 0.0
    fault_truncate: float = 0.0
    fault_lost_reply: float = 0.0
    fault_overrun: float = 0.0  # a download drops its Content-Length and sends OVERRUN_BYTES more
    fault_401: float = 0.0  # the token refused, as after it was revoked
    fault_403: float = 0.0  # the token lacks permission (e.g. for the bill: with path_pattern)
    latency_ms: int = 0
    bandwidth_bytes_per_s: int = 0  # each response body paced to this (one response per connection); 0: off
    ranges: str = "honour"
    retry_after: int = 1
    methods: tuple[str, ...] = ()  # empty: every method
    path_prefix: str = "/api/"
    path_pattern: str = ""
    seed: int | None = None
    # Coretypes with no capacity: a submitted job on one ends Completed, "Could not allocate compute
    # resources", once its cluster starts, without executing.
    no_capacity: tuple[str, ...] = ()

    def merged(self, patch: dict[str, Any]) -> FaultSettings:
        """A copy with `patch` applied; ValueError names each bad key."""
        known = {f.name for f in fields(self)}
        errors = [f"unknown key {k!r}" for k in patch if k not in known]
        values: dict[str, Any] = {}
        for key, value in patch.items():
            if key in PROBABILITIES:
                ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
                errors += [] if ok else [f"{key} must be a number between 0 and 1"]
                values[key] = float(value) if ok else 0.0
            elif key in ("latency_ms", "retry_after", "bandwidth_bytes_per_s"):
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
                errors += [] if ok else [f"{key} must be a non-negative integer"]
                values[key] = value
            elif key == "methods":
                ok = isinstance(value, list) and all(isinstance(m, str) for m in value)
                errors += [] if ok else ["methods must be a list of strings"]
                values[key] = tuple(m.upper() for m in value) if ok else ()
            elif key == "no_capacity":
                ok = isinstance(value, list) and all(isinstance(c, str) for c in value)
                errors += [] if ok else ["no_capacity must be a list of coretype codes"]
                values[key] = tuple(value) if ok else ()
            elif key == "ranges":
                errors += [] if value in RANGE_MODES else [f"ranges must be one of {', '.join(RANGE_MODES)}"]
                values[key] = value
            elif key == "path_prefix":
                errors += [] if isinstance(value, str) else ["path_prefix must be a string"]
                values[key] = value
            elif key == "path_pattern":
                errors += _pattern_errors(value)
                values[key] = value
            elif key == "seed":
                ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
                errors += [] if ok else ["seed must be an integer or null"]
                values[key] = value
        if errors:
            raise ValueError("; ".join(errors))
        return replace(self, **values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"] = list(self.methods)
        data["no_capacity"] = list(self.no_capacity)
        return data


class FaultInjector:
    """WSGI middleware; settings can change at runtime (the admin endpoint calls `update`)."""

    def __init__(self, app: Any, settings: FaultSettings) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self.injected: Counter[str] = Counter()

    def update(self, patch: dict[str, Any]) -> FaultSettings:
        with self._lock:
            self.settings = self.settings.merged(patch)
            if "seed" in patch:
                self._rng = random.Random(self.settings.seed)
            return self.settings

    def _roll(self, environ: dict[str, Any]) -> tuple[FaultSettings, set[str]]:
        with self._lock:
            s = self.settings
            path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
            if not _applies(s, method, path):
                return s, set()
            hits = {
                name for name in PROBABILITIES if getattr(s, name) and self._rng.random() < getattr(s, name)
            }
            self.injected.update(hits)
            return s, hits

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        settings = self.settings
        body = self._faulty(environ, start_response)
        if settings.bandwidth_bytes_per_s and environ.get("PATH_INFO", "").startswith(settings.path_prefix):
            return _Paced(body, settings.bandwidth_bytes_per_s)
        return body

    def _faulty(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        settings, hits = self._roll(environ)
        if settings.latency_ms and environ.get("PATH_INFO", "").startswith(settings.path_prefix):
            time.sleep(settings.latency_ms / 1000)
        if settings.ranges != "honour" and _download(environ, ("GET", "HEAD")):
            environ.pop("HTTP_RANGE", None)
            if settings.ranges == "none":
                start_response = _replacing(start_response, "Accept-Ranges", "none")
        if "fault_drop" in hits:
            environ["emulator.fault"] = "drop"
            _drop(environ)
        if "fault_lost_reply" in hits and not hits & {"fault_429", "fault_500", "fault_401", "fault_403"}:
            environ["emulator.fault"] = "lost_reply"
            body = self.app(environ, lambda *args: None)  # the work is done; its answer never arrives
            for _chunk in body:
                pass
            getattr(body, "close", lambda: None)()
            _drop(environ)
        if "fault_429" in hits:
            environ["emulator.fault"] = "429"
            body = {"detail": f"Request was throttled. Expected available in {settings.retry_after} seconds."}
            response = Response(
                json.dumps(body),
                status=429,
                mimetype="application/json",
                headers={"Retry-After": str(settings.retry_after)},
            )
            return response(environ, start_response)
        for status in (500, 401, 403):
            if f"fault_{status}" in hits:
                environ["emulator.fault"] = str(status)
                response = Response(json.dumps({"detail": REFUSALS[status]}), status=status,
                                    mimetype="application/json")
                return response(environ, start_response)
        if "fault_truncate" in hits and _download(environ):
            return self._truncated(environ, start_response)
        if "fault_overrun" in hits and _download(environ):
            environ["emulator.fault"] = "overrun"
            body = self.app(environ, _replacing(start_response, "Content-Length", None))
            return _Overrun(body)
        return self.app(environ, start_response)

    def _truncated(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Announce the full Content-Length but send only half the body, then close."""
        length: list[int] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            length.extend(int(v) for k, v in headers if k.lower() == "content-length")
            return start_response(status, headers, exc_info)

        body = self.app(environ, capture)
        environ["emulator.fault"] = "truncate"
        return _Truncating(body, (length[0] // 2) if length else 0)


def _download(environ: dict[str, Any], methods: tuple[str, ...] = ("GET",)) -> bool:
    return environ.get("REQUEST_METHOD") in methods and environ.get("PATH_INFO", "").endswith("/contents/")


def _replacing(start_response: Any, name: str, value: str | None) -> Any:
    """A start_response that sets header `name` to `value` (None: drops it) if the answer has it."""

    def replaced(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        kept = [(k, v) for k, v in headers if k.lower() != name.lower()]
        present = len(kept) < len(headers)
        return start_response(status, kept + ([(name, value)] if present and value else []), exc_info)

    return replaced


def _pattern_errors(value: Any) -> list[str]:
    if not isinstance(value, str):
        return ["path_pattern must be a string"]
    try:
        re.compile(value)
    except re.error as exc:
        return [f"path_pattern is not a valid regular expression: {exc}"]
    return []


def _applies(s: FaultSettings, method: str, path: str) -> bool:
    return (
        path.startswith(s.path_prefix)
        and (not s.methods or method in s.methods)
        and (not s.path_pattern or re.fullmatch(s.path_pattern, path) is not None)
    )


def _drop(environ: dict[str, Any]) -> NoReturn:
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError("fault injection: connection dropped")


class _Body:
    """A response body wrapped: what the server closes reaches the body inside."""

    def __init__(self, body: Iterable[bytes]) -> None:
        self.body = body

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


class _Truncating(_Body):
    def __init__(self, body: Iterable[bytes], limit: int) -> None:
        super().__init__(body)
        self.limit = limit

    def __iter__(self) -> Iterator[bytes]:
        remaining = self.limit
        for chunk in self.body:
            if remaining <= 0:
                break
            yield chunk[:remaining]
            remaining -= len(chunk[:remaining])


class _Overrun(_Body):
    """The body, then OVERRUN_BYTES it never announced."""

    def __iter__(self) -> Iterator[bytes]:
        yield from self.body
        yield b"\0" * OVERRUN_BYTES


class _Paced(_Body):
    """A body sent no faster than `rate` bytes a second (in slices of at most 256 KiB)."""

    SLICE = 256 << 10

    def __init__(self, body: Iterable[bytes], rate: int) -> None:
        super().__init__(body)
        self.rate = rate

    def __iter__(self) -> Iterator[bytes]:
        started, sent = time.monotonic(), 0
        for chunk in self.body:
            for at in range(0, len(chunk), self.SLICE):
                piece = chunk[at : at + self.SLICE]
                ahead = (sent + len(piece)) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                yield piece
                sent += len(piece)
