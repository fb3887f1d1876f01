"""The relay <-> agent protocol: one JSON request line per Unix-socket connection, one JSON answer.

An `output` answer carries the open file as SCM_RIGHTS ancillary data, so the agent never writes
into a user's directory and the user never needs to read the agent's files by path.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

MAX_LINE = 4 * 1024 * 1024
LOG_CHUNK = 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not one JSON object line."""


def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid, from the kernel (SO_PEERCRED): the user cannot forge it."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def read_message(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One JSON line (and any file descriptors that came with its first bytes)."""
    buf, fds = b"", []
    while not buf.endswith(b"\n"):
        data, new_fds, _flags, _addr = socket.recv_fds(conn, 65536, 16)
        fds.extend(new_fds)
        if not data:
            break
        buf += data
        if len(buf) > MAX_LINE:
            raise ProtocolError("message too long")
    try:
        message = json.loads(buf)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {buf[:80]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message, fds


def send_message(conn: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = encode(message)
    if fds:
        sent = socket.send_fds(conn, [data], fds)
        conn.sendall(data[sent:])
    else:
        conn.sendall(data)


def call(path: Path, message: dict[str, Any], timeout: float = 30.0) -> tuple[dict[str, Any], list[int]]:
    """Connect, send one request, read one answer (with any fds), close."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        send_message(conn, message)
        return read_message(conn)
