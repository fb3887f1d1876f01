"""Relay socket limits: hostile frames get error answers, passed fds are dropped, caps and deadlines hold."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jobkit import plan

from burst_agent.config import config_from_mapping
from burst_agent.lifecycle import JobState
from burst_agent.record import Progress, Remote, Result
from burst_agent.relayproto import (
    AgentBusy,
    ProtocolError,
    call,
    decode,
    offset_field,
    read_message,
    read_request,
    send_message,
)
from burst_agent.relayserver import RelayServer
from burst_agent.spool import Spool

ME = os.getuid()


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def bind(self, **_kw: Any) -> _Log:
        return self


def _ctx(tmp_path: Path, **agent: Any) -> SimpleNamespace:
    log_file = tmp_path / "job.log"
    log_file.write_bytes(b"hello log\n")
    job = SimpleNamespace(id="j1", owner_uid=ME, plan=plan(stdout_path=str(log_file)), state=JobState.RUNNING,
                          terminal=False, remote=Remote(), remote_job_id=None, result=Result(),
                          progress=Progress(), attempt=0)
    store = SimpleNamespace(by_entry=lambda entry: job if entry == "mine" else None)
    return SimpleNamespace(config=config_from_mapping({"agent": agent}), store=store, log=_Log(),
                           spool=Spool(tmp_path / "spool").ensure(), clock=time.time)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., RelayServer]]:
    started: list[RelayServer] = []

    def start(**agent: Any) -> RelayServer:
        # A short accept timeout: stop() waits for the accept loop to notice, 0.5 s a test by default.
        started.append(RelayServer(_ctx(tmp_path, **agent), accept_timeout_s=0.02))  # type: ignore[arg-type]
        started[-1].start()
        return started[-1]

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def server(serve: Callable[..., RelayServer]) -> RelayServer:
    return serve(relay_max_connections_per_user=2)


def _ask(server: RelayServer, frame: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(server.ctx.spool.socket_path))
        conn.sendall(frame)
        return json.loads(conn.makefile("rb").readline())


@pytest.mark.parametrize("frame", [
    b"[" * 20_000, b'{"a":' * 20_000, b'{"op": "status", "entry": "mine", "offset": 1e400}',
    b'{"op": "status", "entry": "mine", "offset": -1e400}',
    b'{"op": "status", "entry": "mine", "offset": NaN}',
    b'{"op": "status", "entry": "mine", "offset": ' + b"9" * 4000 + b"}",
    b'{"op": "status", "entry": "mine", "offset": ' + b"9" * 5000 + b"}", b'{"op": "status", "entry": ["x"]}',
    b'{"op": "output", "entry": "mine", "path": {"a": 1}}', b'{"op": ["status"]}', b"\xff\xfe{}", b"[]", b"",
])
def test_hostile_frames_get_an_error_answer(server: RelayServer, frame: bytes) -> None:
    answer = _ask(server, frame + b"\n")
    assert set(answer) == {"error"} and answer["error"], answer
    assert not [line for line in server.ctx.log.lines if line[0] == "error"]


def test_a_good_status_still_works(server: RelayServer) -> None:
    answer = _ask(server, b'{"op": "status", "entry": "mine", "offset": 6}\n')
    assert answer["state"] == "running" and answer["log_size"] == 10


def test_an_offset_past_what_lseek_takes_is_the_end_of_the_log(server: RelayServer) -> None:
    """Found by test_fuzz_relayproto: seek(2**44 + 1) is EINVAL on ext4/tmpfs, and the relay got no answer."""
    answer = _ask(server, b'{"op": "status", "entry": "mine", "offset": 17592186040321}\n')
    assert answer["log"] == "" and answer["log_size"] == 10


def test_passed_fds_are_never_installed() -> None:
    agent, peer = socket.socketpair()
    null = os.open(os.devnull, os.O_RDONLY)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(100):
        socket.send_fds(peer, [b" "], [null] * 16)
    socket.send_fds(peer, [b'{"op": "status"}\n'], [null])
    assert read_request(agent, time.monotonic() + 60) == {"op": "status"}
    assert len(os.listdir("/proc/self/fd")) == before
    for each in (agent, peer):
        each.close()
    os.close(null)


def test_a_request_past_its_deadline_or_size_is_a_protocol_error() -> None:
    agent, peer = socket.socketpair()
    with agent, peer:
        with pytest.raises(ProtocolError, match="deadline"):
            read_request(agent, time.monotonic() - 1)
        peer.sendall(b"x" * 2000)
        with pytest.raises(ProtocolError, match="longer than 1000"):
            read_request(agent, time.monotonic() + 60, limit=1000)


def test_a_silent_connection_is_answered_at_the_deadline(serve: Callable[..., RelayServer]) -> None:
    assert "deadline" in _ask(serve(relay_request_timeout_s=0.1), b'{"op": "sta')["error"]


def test_connections_over_the_per_user_cap_get_busy_and_callers_see_an_oserror(server: RelayServer) -> None:
    path = server.ctx.spool.socket_path
    held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    for conn in held:
        conn.connect(str(path))
    with pytest.raises(AgentBusy, match=f"uid {ME} has 2 connections") as refused:
        call(path, {"op": "status", "entry": "mine"})
    assert isinstance(refused.value, OSError)
    for conn in held:
        conn.close()


def test_the_overall_cap_counts_every_user(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, relay_max_connections=3, relay_max_connections_per_user=2)
    relay = RelayServer(ctx)  # type: ignore[arg-type]
    assert [relay._admit(uid) for uid in (1, 1)] == [None, None]
    assert "uid 1 has 2" in str(relay._admit(1))
    assert relay._admit(2) is None
    assert "serving 3" in str(relay._admit(3))
    relay._release(1)
    assert relay._admit(3) is None


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (-5, 0), (2**63 - 1, 2**63 - 1)])
def test_offsets_in_range(value: int, expected: int) -> None:
    assert offset_field({"offset": value}) == expected


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1.5, 2**63, 10**4000, True, "5", None, [1]])
def test_offsets_out_of_range_or_not_integers(value: Any) -> None:
    with pytest.raises(ProtocolError, match="offset"):
        offset_field({"offset": value})


def test_decode_turns_parser_failures_into_protocol_errors() -> None:
    for line in (b"[" * 100_000, b"1" * 5000, b"\xff", b"[1]", b"{"):
        with pytest.raises(ProtocolError):
            decode(line)


def test_an_answer_with_fds_round_trips() -> None:
    agent, relay = socket.socketpair()
    fd = os.open(os.devnull, os.O_RDONLY)
    with agent, relay:
        send_message(agent, {"ok": True}, [fd])
        answer, fds = read_message(relay)
    assert answer == {"ok": True} and len(fds) == 1
    for each in (fd, *fds):
        os.close(each)
