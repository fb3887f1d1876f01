"""Minimal Linux inotify via ctypes (inotify_init1 / inotify_add_watch), for the spool watcher.

Chosen over the `inotify_simple` package: the few lines below are all the watcher needs, and the agent
already falls back to scanning where inotify is missing (non-Linux, exhausted watches, some network
filesystems), so a dependency would buy nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of NUL-padded name)


class InotifyUnavailable(OSError):
    """inotify cannot be used here; callers fall back to scanning."""


def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if not hasattr(lib, "inotify_init1"):
        raise InotifyUnavailable("libc has no inotify_init1")
    lib.inotify_init1.argtypes = [ctypes.c_int]
    lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return lib


class Inotify:
    """An inotify instance watching one directory; readable when events are queued."""

    def __init__(self, directory: str | os.PathLike[str], mask: int) -> None:
        try:
            lib = _libc()
        except OSError as exc:
            raise InotifyUnavailable(f"inotify not available: {exc}") from exc
        fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise InotifyUnavailable(err, f"inotify_init1: {os.strerror(err)}")
        if lib.inotify_add_watch(fd, os.fsencode(directory), mask | IN_ONLYDIR) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise InotifyUnavailable(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
        self._fd: int | None = fd

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("inotify instance is closed")
        return self._fd

    def wait(self, timeout: float | None) -> list[str]:
        """Block until events are queued (or timeout); drain and return their names ([] on timeout)."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        ready = poller.poll(None if timeout is None else max(0, round(timeout * 1000)))
        return self.read_names() if ready else []

    def read_names(self) -> list[str]:
        """Drain queued events; the names they carry ('' for overflow or directory-level events)."""
        names: list[str] = []
        while True:
            try:
                data = os.read(self.fileno(), 64 * 1024)
            except BlockingIOError:
                return names
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                names.append(os.fsdecode(data[start:start + length].rstrip(b"\0")))
                offset = start + length

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
