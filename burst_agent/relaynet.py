"""How a relay reaches the agent: the spool's Unix socket, or TCP with a MUNGE credential per request.

Over TCP a request is two lines, the credential then the request's JSON line; its payload binds it to
those exact bytes and to the agent's address (mungeauth.payload_for). An answer is one JSON line; an
`output` answer says `"stream": true` and its `size`, and exactly that many bytes of the file follow
on the connection. With several agent addresses (an active agent and its standbys) each is tried in
turn until one answers, and the one that did is tried first next time.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from burst_agent import mungeauth
from burst_agent.relayaddr import AgentAddress, parse_addresses, socket_name
from burst_agent.relayproto import MAX_LINE, MAX_REQUEST, AgentBusy, ProtocolError, call, decode, encode

AGENTS_FILE = "agents"  # <spool>/agents: the agents' addresses, for relays on other nodes
AGENTS_FILE_MAX = 64 * 1024
MAX_FRAME = mungeauth.CREDENTIAL_MAX + 1 + MAX_REQUEST + 1
CONNECT_TIMEOUT_S = 5.0  # per address: a dead host must not hold a relay for the kernel's SYN timeout
ANSWER_TIMEOUT_S = 30.0
CHUNK = 1024 * 1024
T = TypeVar("T")


class NotLeader(ConnectionError):
    """That agent answers but does not lead (a standby or a deposed leader): try the next address."""


class AgentRefused(PermissionError):
    """The agent refused this request's credential (replayed, expired, another key...): a fresh
    credential with the next request may pass (munged was restarting, the request was raced)."""


class StreamBroken(ConnectionError):
    """An output's bytes stopped before the size its answer announced."""


# An answer that is not the agent's word on the request, by its flag: try again, or the next address.
REFUSALS: tuple[tuple[str, type[OSError]], ...] = (
    ("busy", AgentBusy), ("not_leader", NotLeader), ("refused", AgentRefused),
)


class Transport(Protocol):
    def call(self, message: dict[str, Any]) -> tuple[dict[str, Any], list[int]]: ...

    def fetch(self, message: dict[str, Any]) -> tuple[dict[str, Any], BinaryIO | None]: ...

    def here(self) -> bool: ...


# -- framing (both ends) ----------------------------------------------------------------------------------


def frame(credential: bytes, request_line: bytes) -> bytes:
    """A TCP request: the credential line, then the request line."""
    return credential + b"\n" + request_line + b"\n"


def split_frame(data: bytes) -> tuple[bytes, bytes]:
    """(credential, request line) of a whole frame; ProtocolError when it is not one."""
    credential, newline, rest = data.partition(b"\n")
    line, end, _after = rest.partition(b"\n")
    if not newline or not end:
        raise ProtocolError("a request is two lines: a MUNGE credential, then the request")
    if not mungeauth.looks_like_credential(credential):
        raise ProtocolError("the first line is not a MUNGE credential")
    return credential, line


def read_frame(conn: socket.socket, deadline: float, limit: int = MAX_FRAME) -> tuple[bytes, bytes]:
    """The agent's side: one whole frame by `deadline` (time.monotonic()), at most `limit` bytes."""
    data = b""
    while data.count(b"\n") < 2:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProtocolError("read deadline passed before the request ended")
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            raise ProtocolError("read deadline passed before the request ended") from None
        if not chunk:
            break
        data += chunk
        if len(data) > limit and data[:limit].count(b"\n") < 2:
            raise ProtocolError(f"request longer than {limit} bytes")
    return split_frame(data)


def read_answer(reader: BinaryIO) -> dict[str, Any]:
    """The relay's side: one JSON answer line (what follows it stays in `reader`)."""
    line = reader.readline(MAX_LINE + 1)
    if not line:
        raise ConnectionResetError(errno.ECONNRESET, "the agent closed the connection unanswered")
    if not line.endswith(b"\n"):
        raise ProtocolError("answer too long or cut short")
    return decode(line)


class Stream(io.RawIOBase):
    """Exactly `size` bytes of an output from the connection, then end of file; StreamBroken if the
    connection ends first. Closing it closes the connection."""

    def __init__(self, reader: BinaryIO, conn: socket.socket, size: int) -> None:
        super().__init__()
        self._reader, self._conn, self.left = reader, conn, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self.left, CHUNK)]
        got = self._reader.readinto(view)  # type: ignore[attr-defined]
        if not got:
            raise StreamBroken(errno.ECONNRESET, f"the output stream ended {self.left} bytes early")
        self.left -= got
        return got

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                self._reader.close()
            self._conn.close()
        super().close()


# -- the Unix socket (the default, unchanged) -----------------------------------------------------------


class UnixAgent:
    """The agent on this node: `<spool>/agent.sock`; outputs come as passed descriptors."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def call(self, message: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        return call(self.path, message)

    def fetch(self, message: dict[str, Any]) -> tuple[dict[str, Any], BinaryIO | None]:
        answer, fds = call(self.path, message)
        for fd in fds[1:]:
            os.close(fd)
        return answer, (os.fdopen(fds[0], "rb") if fds else None)

    def here(self) -> bool:
        """Whether this node has the agent's socket at all (a delivery elsewhere has nothing to do)."""
        return self.path.exists()


# -- TCP with MUNGE ---------------------------------------------------------------------------------------


class TcpAgents:
    """The agents at `addresses`, tried in turn from the last one that answered."""

    def __init__(self, addresses: Sequence[AgentAddress], *, munge: Callable[[str], bytes] = mungeauth.encode,
                 connect_timeout: float = CONNECT_TIMEOUT_S, timeout: float = ANSWER_TIMEOUT_S) -> None:
        if not addresses:
            raise ValueError("no agent address")
        self.addresses = tuple(addresses)
        self.current = 0
        self._munge, self._connect_timeout, self._timeout = munge, connect_timeout, timeout

    def here(self) -> bool:
        return True

    def _exchange(self, address: AgentAddress, message: dict[str, Any]) -> tuple[dict[str, Any], BinaryIO,
                                                                                    socket.socket]:
        conn = socket.create_connection((address.host, address.port), timeout=self._connect_timeout)
        try:
            conn.settimeout(self._timeout)
            line = encode(message)[:-1]
            credential = self._munge(mungeauth.payload_for(socket_name(conn.getpeername()), line))
            # Refused before reading (busy): its answer may still be there to read.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.sendall(frame(credential, line))
            reader = conn.makefile("rb")
            answer = read_answer(reader)
        except BaseException:
            conn.close()
            raise
        kind = next((kind for key, kind in REFUSALS if answer.get(key) is True), None)
        if kind is not None:
            reader.close()
            conn.close()
            raise kind(errno.EAGAIN, f"{address}: {answer.get('error') or 'refused'}")
        return answer, reader, conn

    def _each(self, attempt: Callable[[AgentAddress], T]) -> T:
        """The first answer, trying each address once from the current one; when none answers, the
        error to retry on (AgentBusy if the one that answered was busy: load, not trouble)."""
        failures: list[tuple[AgentAddress, Exception]] = []
        for step in range(len(self.addresses)):
            index = (self.current + step) % len(self.addresses)
            try:
                result = attempt(self.addresses[index])
            except (OSError, ProtocolError) as exc:
                failures.append((self.addresses[index], exc))
                continue
            self.current = index
            return result
        busy = [exc for _address, exc in failures if isinstance(exc, AgentBusy)]
        if busy:
            raise busy[0]
        if len(failures) == 1 and isinstance(failures[0][1], OSError):
            raise failures[0][1]
        summary = "; ".join(f"{where}: {getattr(exc, 'strerror', None) or exc}" for where, exc in failures)
        raise ConnectionError(errno.EHOSTUNREACH, f"no agent answered ({summary})")

    def call(self, message: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        def attempt(address: AgentAddress) -> dict[str, Any]:
            answer, reader, conn = self._exchange(address, message)
            reader.close()
            conn.close()
            return answer

        return self._each(attempt), []

    def fetch(self, message: dict[str, Any]) -> tuple[dict[str, Any], BinaryIO | None]:
        def attempt(address: AgentAddress) -> tuple[dict[str, Any], BinaryIO | None]:
            answer, reader, conn = self._exchange(address, message)
            size = answer.get("size")
            if answer.get("stream") is True and isinstance(size, int) and not isinstance(size, bool) \
                    and size >= 0:
                return answer, io.BufferedReader(Stream(reader, conn, size), CHUNK)
            reader.close()
            conn.close()
            return answer, None

        return self._each(attempt)


# -- which one ---------------------------------------------------------------------------------------------


def spool_agents(spool: Path) -> tuple[AgentAddress, ...]:
    """The addresses in `<spool>/agents` (comma, space or line separated; `#` comments), if that file
    is the spool owner's or root's and nobody else may write it: a relay must never be sent to an
    agent another user named. None when the file is absent."""
    try:
        fd = os.open(spool / AGENTS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return ()
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        owners = {0, os.stat(spool).st_uid}
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in owners or st.st_mode & 0o022:
            raise ValueError(f"{spool / AGENTS_FILE}: ignored, it must be a regular file of the spool's owner"
                             " or root that group and others cannot write")
        text = handle.read(AGENTS_FILE_MAX).decode("utf-8", "replace")
    return parse_addresses(" ".join(line.split("#", 1)[0] for line in text.splitlines()))


def agent_addresses(listed: str | None, spool: Path) -> tuple[AgentAddress, ...]:
    """The agents a relay or a delivery talks to over TCP: `--agent` when given, else `<spool>/agents`;
    none (the Unix socket) when neither names one. ValueError for a bad list or a bad file."""
    return parse_addresses(listed) if listed else spool_agents(spool)


def transport_for(socket_path: Path, agents: Sequence[AgentAddress] = ()) -> Transport:
    """TCP with MUNGE to `agents` when there are any, else the Unix socket at `socket_path`."""
    return TcpAgents(agents) if agents else UnixAgent(socket_path)
