"""Connection caps of a relay listener: so many connections in all, and so many per key (a uid, a host)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Hashable
from typing import Any


class ConnectionCaps:
    """Open connections by key; `admit` counts one in or says why not (thread-safe)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # how the busy answer names them: "relay", "TCP relay"
        self._open: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: Hashable, shown: str, total: int, per_key: int) -> str | None:
        """Count a connection of `key` in (None), or the busy answer: `total` reached, or `per_key`."""
        with self._lock:
            if sum(self._open.values()) >= total:
                return f"busy: the agent is serving {total} {self.kind} connections; retry"
            if self._open.get(key, 0) >= per_key:
                return f"busy: {shown} has {per_key} connections open; retry"
            self._open[key] = self._open.get(key, 0) + 1
        return None

    def release(self, key: Hashable) -> None:
        with self._lock:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]


def accept_loop(listener: socket.socket, stopping: threading.Event,
                dispatch: Callable[[socket.socket, Any], None],
                throttled_warning: Callable[[str], None]) -> None:
    """Accept until `stopping`: each connection to `dispatch(conn, peer)`. An accept that fails (EMFILE,
    ENFILE: the connection stays queued) is said now and then and backed off, never spun on."""
    while not stopping.is_set():
        try:
            conn, peer = listener.accept()
        except TimeoutError:
            continue
        except OSError as exc:
            if stopping.is_set():
                return
            throttled_warning(str(exc))
            stopping.wait(0.1)
            continue
        dispatch(conn, peer)


class Acceptor:
    """A listening socket served by accept_loop on a thread of its own, until stop()."""

    def __init__(self) -> None:
        self.listener: socket.socket | None = None
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, listener: socket.socket, name: str, accept: Callable[[socket.socket], None]) -> None:
        """Serve `listener` with `accept(listener)` (which runs accept_loop on self.stopping)."""
        self.listener = listener
        self.stopping.clear()
        self._thread = threading.Thread(target=accept, args=(listener,), name=name, daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Stop accepting and close the listener; whether it was listening."""
        if self.listener is None:
            return False
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.listener.close()
        self.listener = None
        return True
