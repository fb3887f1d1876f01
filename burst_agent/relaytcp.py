"""The agent's TCP listener for relays on other nodes: each request proven by MUNGE, answered by RelayServer.

Off unless agent.relay_tcp_listen is set. A connection is admitted by its peer host (the caps
relay_max_connections in all and relay_tcp_max_connections_per_host) before a byte is read, and by
the uid munged vouches for (relay_max_connections_per_user, shared with agent.sock) once its
credential passed; it then has relay_request_timeout_s to send its request, as on the Unix socket.
The operations are RelayServer's own handlers; an `output` answer streams the file after its header
instead of passing a descriptor. See docs/security.md, "Relays over TCP".
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

from burst_agent import mungeauth
from burst_agent.conncaps import Acceptor, ConnectionCaps, accept_loop
from burst_agent.relayaddr import parse_address, socket_name
from burst_agent.relaynet import read_frame
from burst_agent.relayproto import ProtocolError, decode, send_message
from burst_agent.relayserver import BAD_REQUEST, REFUSAL_LOG_EVERY_S, RelayServer


class TcpRelayServer:
    """Serves agent.relay_tcp_listen for `relay` (its handlers, its per-uid caps, its log positions)."""

    def __init__(self, relay: RelayServer, *, accept_timeout_s: float = 0.5,
                 runner: mungeauth.Runner = mungeauth.run_command) -> None:
        self.relay, self.ctx = relay, relay.ctx
        self.accept_timeout_s, self.runner = accept_timeout_s, runner
        self.address: tuple[str, int] | None = None  # where it listens, once started
        self._acceptor = Acceptor()
        self._hosts = ConnectionCaps("TCP relay")  # connections being served, by peer host
        self._logged_at: dict[str, float] = {}
        self.refused: dict[str, int] = {}  # why -> credentials refused since the last log line of it

    # -- admission ------------------------------------------------------------------------------------

    def _admit(self, host: str) -> str | None:
        cfg = self.ctx.config.agent
        return self._hosts.admit(host, host, cfg.relay_max_connections,
                                 cfg.relay_tcp_max_connections_per_host)

    def _release(self, host: str) -> None:
        self._hosts.release(host)

    def _now_and_then(self, what: str) -> bool:
        now = time.monotonic()
        if now - self._logged_at.get(what, -REFUSAL_LOG_EVERY_S) < REFUSAL_LOG_EVERY_S:
            return False
        self._logged_at[what] = now
        return True

    # -- one request ----------------------------------------------------------------------------------

    def authenticate(self, credential: bytes, line: bytes, agent: str, deadline: float) -> mungeauth.Identity:
        """The caller, as munged vouches for it, if `credential` was made for `line` sent to `agent`."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise mungeauth.CredentialRefused("deadline", "read deadline passed before the check")
        try:
            decoded = mungeauth.decode(credential, runner=self.runner, timeout=remaining)
        except mungeauth.MungeError as exc:
            why = f"the agent cannot check credentials: {exc.strerror}"
            raise mungeauth.CredentialRefused("munged", why) from None
        return mungeauth.check(decoded, mungeauth.payload_for(agent, line),
                               self.ctx.config.agent.relay_credential_max_age_s)

    def _note(self, host: str, kind: str, why: str) -> None:
        """Log a refused request: its peer, why and its kind, never its credential; at most once a minute
        per kind, with how many there were."""
        self.refused[kind] = self.refused.get(kind, 0) + 1
        if self._now_and_then(f"refused:{kind}"):
            level = self.ctx.log.error if kind == "munged" else self.ctx.log.warning
            level("relay request refused", peer=host, reason=why, kind=kind, refused=self.refused[kind])
            self.refused[kind] = 0

    def handle(self, conn: socket.socket, host: str) -> None:
        """One request from `host`: read and proven within the deadline, then answered (as its uid)."""
        timeout = self.ctx.config.agent.relay_request_timeout_s
        deadline = time.monotonic() + timeout
        try:
            credential, line = read_frame(conn, deadline)
            identity = self.authenticate(credential, line, socket_name(conn.getsockname()), deadline)
        except ProtocolError as exc:  # no credential, a bad frame, or too slow
            self._note(host, "frame", str(exc))
            self._send(conn, {"error": str(exc)[:200]}, [], timeout)
            return
        except mungeauth.CredentialRefused as exc:
            self._note(host, exc.kind, str(exc))
            self._send(conn, {"error": f"credential refused: {exc}", "refused": True}, [], timeout)
            return
        busy = self.relay._admit(identity.uid)  # the uid's cap, shared with agent.sock
        if busy is not None:
            self._send(conn, {"error": busy, "busy": True}, [], timeout)
            return
        out_fds: list[int] = []
        try:
            try:
                answer, out_fds = self.relay.answer(identity.uid, decode(line))
            except BAD_REQUEST as exc:
                answer = {"error": str(exc)[:200] or type(exc).__name__}
            self._send(conn, answer, out_fds, timeout)
        finally:
            for fd in out_fds:
                os.close(fd)
            self.relay._release(identity.uid)

    def _send(self, conn: socket.socket, answer: dict[str, Any], fds: list[int], timeout: float) -> None:
        """The answer; with a descriptor (an output), its size and `stream`, then the file's bytes."""
        conn.settimeout(timeout)  # each send must progress within it; a large output takes what it takes
        if not fds:
            send_message(conn, answer)
            return
        size = os.fstat(fds[0]).st_size
        send_message(conn, {**answer, "size": size, "stream": True})
        with os.fdopen(os.dup(fds[0]), "rb") as source:
            sent = conn.sendfile(source, 0, size)
        if sent != size:  # the file shrank under us: the relay sees the stream end early
            raise ConnectionAbortedError(f"output stream ended at {sent} of {size} bytes")

    # -- serving --------------------------------------------------------------------------------------

    def _serve_one(self, conn: socket.socket, host: str) -> None:
        try:
            with conn:
                self.handle(conn, host)
        except OSError as exc:
            self.ctx.log.debug("relay TCP connection failed", peer=host, error=str(exc))
        except Exception as exc:  # a bug or the store failing: one line, no traceback, no answer
            self.ctx.log.error("relay request failed", peer=host, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._release(host)

    def _dispatch(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
        host = socket_name(peer).rpartition(":")[0]
        refusal = self._admit(host)
        if refusal is None:
            try:
                threading.Thread(target=self._serve_one, args=(conn, host), name="relay-tcp-conn",
                                 daemon=True).start()
                return
            except RuntimeError:
                self._release(host)
                refusal = "busy: the agent cannot start a thread; retry"
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            send_message(conn, {"error": refusal, "busy": True})
        conn.close()
        if self._now_and_then("busy"):
            self.ctx.log.info("relay TCP connections refused", peer=host, reason=refusal)

    def _accept_loop(self, listener: socket.socket) -> None:
        def warn(error: str) -> None:
            if self._now_and_then("accept"):
                self.ctx.log.warning("relay TCP accept failed", error=error)
        accept_loop(listener, self._acceptor.stopping, self._dispatch, warn)

    def start(self) -> TcpRelayServer:
        where = parse_address(self.ctx.config.agent.relay_tcp_listen, any_port=True)
        family, kind, proto, _name, sockaddr = socket.getaddrinfo(
            where.host, where.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(sockaddr)
        listener.listen(socket.SOMAXCONN)
        listener.settimeout(self.accept_timeout_s)
        bound = listener.getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        self._acceptor.start(listener, "relay-tcp", self._accept_loop)
        self.ctx.log.info("relay TCP listener up", host=self.address[0], port=self.address[1])
        return self

    def stop(self) -> None:
        self._acceptor.stop()


def start_tcp(relay: RelayServer) -> TcpRelayServer | None:
    """The TCP listener when agent.relay_tcp_listen is set, started; else None."""
    return TcpRelayServer(relay).start() if relay.ctx.config.agent.relay_tcp_listen else None
