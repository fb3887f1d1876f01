"""The relay <-> agent protocol: one JSON request line per Unix-socket connection, one JSON answer.

An `output` answer carries the open file as SCM_RIGHTS ancillary data, so the agent never writes
into a user's directory and the user never needs to read the agent's files by path. Requests never
carry files: the agent reads them with a plain recv(), so any the peer sends are never installed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

MAX_LINE = 4 * 1024 * 1024  # an answer: a 1 MiB log chunk in base64 and the rest
MAX_REQUEST = 64 * 1024  # a request: an op, an entry name, a path, an offset
LOG_CHUNK = 1024 * 1024
OFFSET_LIMIT = 2**63 - 1  # what lseek() takes


class ProtocolError(Exception):
    """The peer sent something that is not one JSON object line, or a field of the wrong kind."""


class AgentBusy(ConnectionError):
    """The agent refused the connection for now (too many open); an OSError, so callers retry."""


def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid, from the kernel (SO_PEERCRED): the user cannot forge it."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One JSON object, or ProtocolError (never a RecursionError or a ValueError of the parser)."""
    try:
        message = json.loads(line)
    except RecursionError as exc:
        raise ProtocolError("not JSON: nested too deeply") from exc
    except ValueError as exc:  # also bad UTF-8 and integers past the 4300-digit limit
        raise ProtocolError(f"not JSON: {str(exc)[:100]} in {line[:80]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message


def text_field(message: dict[str, Any], key: str) -> str:
    value = message.get(key, "")
    if not isinstance(value, str):
        raise ProtocolError(f"{key!r} must be a string")
    return value


def offset_field(message: dict[str, Any], key: str = "offset") -> int:
    """A byte offset: an integer from 0 to 2**63-1 (negative means 0, as before)."""
    value = message.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{key!r} must be an integer")
    if value > OFFSET_LIMIT:
        raise ProtocolError(f"{key!r} out of range")
    return max(0, value)


def read_request(conn: socket.socket, deadline: float, limit: int = MAX_REQUEST) -> dict[str, Any]:
    """The agent's side: one request line by `deadline` (time.monotonic()), at most `limit` bytes.

    A plain recv(): SCM_RIGHTS the peer attaches are dropped by the kernel, never installed here.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProtocolError("read deadline passed before the request line ended")
        conn.settimeout(remaining)
        try:
            data = conn.recv(65536)
        except TimeoutError:
            raise ProtocolError("read deadline passed before the request line ended") from None
        if not data:
            break
        end = data.find(b"\n")
        chunks.append(data if end < 0 else data[: end + 1])
        size += len(chunks[-1])
        if size > limit:
            raise ProtocolError(f"request longer than {limit} bytes")
        if end >= 0:
            break
    return decode(b"".join(chunks))


def read_message(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The relay's side: one JSON answer line and the file descriptors that came with it."""
    chunks: list[bytes] = []
    fds: list[int] = []
    size = 0
    try:
        while not chunks or not chunks[-1].endswith(b"\n"):
            data, new_fds, _flags, _addr = socket.recv_fds(conn, 65536, 16)
            fds.extend(new_fds)
            if not data and not chunks:  # closed unanswered: an agent stopping or shedding load
                raise ConnectionResetError(errno.ECONNRESET, "the agent closed the connection unanswered")
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if size > MAX_LINE:
                raise ProtocolError("message too long")
        return decode(b"".join(chunks)), fds
    except BaseException:
        for fd in fds:
            _close(fd)
        raise


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def send_message(conn: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = encode(message)
    if fds:
        sent = socket.send_fds(conn, [data], fds)
        conn.sendall(data[sent:])
    else:
        conn.sendall(data)


def call(path: Path, message: dict[str, Any], timeout: float = 30.0) -> tuple[dict[str, Any], list[int]]:
    """Connect, send one request, read one answer (with any fds), close; AgentBusy if refused for now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        try:
            send_message(conn, message)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # An agent at its connection caps answers "busy" and closes without reading the request:
            # the answer is still there to read.
            try:
                answer, fds = read_message(conn)
            except (OSError, ProtocolError):
                raise exc from None
        else:
            answer, fds = read_message(conn)
    if answer.get("busy") is True:
        for fd in fds:
            _close(fd)
        raise AgentBusy(errno.EAGAIN, str(answer.get("error") or "agent busy"))
    return answer, fds
