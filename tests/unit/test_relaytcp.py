"""The agent's TCP listener with a fake munged: munged's uid, forged and replayed requests, streams, caps."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jobkit import plan

from burst_agent.config import ConfigError, config_from_mapping
from burst_agent.lifecycle import JobState
from burst_agent.mungeauth import payload_for
from burst_agent.record import Progress, Remote, Result
from burst_agent.relayaddr import AgentAddress
from burst_agent.relaynet import AgentRefused, TcpAgents, frame
from burst_agent.relayproto import AgentBusy, encode
from burst_agent.relayserver import RelayServer
from burst_agent.relaytcp import TcpRelayServer, start_tcp
from burst_agent.spool import Spool

OWNER = 1001


class FakeMunged:
    """munge/unmunge as munged would answer: the credential names its maker; each decodes once."""

    def __init__(self) -> None:
        self.uid, self.age, self.seen = OWNER, 0, set()

    def munge(self, payload: str) -> bytes:
        made = int(time.time()) - self.age
        body = json.dumps({"p": payload, "u": self.uid, "t": made, "n": time.time_ns()})
        return b"MUNGE:" + base64.b64encode(body.encode()) + b":"

    def run(self, argv: tuple[str, ...], data: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        assert argv[0] == "unmunge"
        cred = data.strip()
        body = json.loads(base64.b64decode(cred[6:-1]))
        status = 17 if cred in self.seen else 0
        self.seen.add(cred)
        meta = (f"STATUS: {status}\nENCODE_TIME: {body['t']}\nDECODE_TIME: {int(time.time())}\n"
                f"UID: {body['u']}\nGID: {body['u']}\n\n{body['p']}")
        return status, meta.encode(), b""


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def bind(self, **_kw: Any) -> _Log:
        return self


def _ctx(tmp_path: Path, **agent: Any) -> SimpleNamespace:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "out.bin").write_bytes(bytes(range(256)) * 4096)
    (tmp_path / "job.log").write_bytes(b"hello log\n")
    shape = plan(stdout_path=str(tmp_path / "job.log"), output_dir=str(tmp_path / "results"))
    job = SimpleNamespace(id="j1", owner_uid=OWNER, state=JobState.DONE, terminal=True, remote=Remote(),
                          plan=shape, remote_job_id="r1", result=Result(exit_code=0), progress=Progress(),
                          attempt=0)
    store = SimpleNamespace(by_entry=lambda entry: job if entry == "mine" else None, get=lambda _ref: None,
                            owned_by=lambda uid, **_kw: [job] if uid == OWNER else [],
                            record_progress=lambda *_a, **_kw: None)
    config = config_from_mapping({"agent": {"relay_tcp_listen": "127.0.0.1:0", **agent}})
    return SimpleNamespace(config=config, store=store, log=_Log(), spool=Spool(tmp_path / "spool").ensure(),
                           clock=time.time, job_log=lambda _job: _Log())


@pytest.fixture
def munged() -> FakeMunged:
    return FakeMunged()


@pytest.fixture
def serve(tmp_path: Path, munged: FakeMunged) -> Iterator[Callable[..., TcpRelayServer]]:
    started: list[TcpRelayServer] = []

    def start(**agent: Any) -> TcpRelayServer:
        relay = RelayServer(_ctx(tmp_path, **agent))  # type: ignore[arg-type]
        started.append(TcpRelayServer(relay, accept_timeout_s=0.02, runner=munged.run).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _client(server: TcpRelayServer, munged: FakeMunged) -> TcpAgents:
    assert server.address is not None
    return TcpAgents([AgentAddress(*server.address)], munge=munged.munge)


def _raw(server: TcpRelayServer, data: bytes) -> dict[str, Any]:
    assert server.address is not None
    with socket.create_connection(server.address, timeout=30) as conn:
        conn.sendall(data)
        return json.loads(conn.makefile("rb").readline())


def test_the_owner_munged_names_gets_the_status_and_log(serve, munged):
    answer, fds = _client(server := serve(), munged).call({"op": "status", "entry": "mine"})
    assert (answer["state"], answer["exit_code"]) == ("done", 0)
    assert base64.b64decode(answer["log"]) == b"hello log\n"
    assert fds == [] and server.relay.last_seen  # the orphan check hears of TCP relays too


def test_another_uid_sees_nothing_and_cancels_nothing(serve, munged):
    munged.uid = OWNER + 1
    client = _client(serve(), munged)
    assert client.call({"op": "status", "entry": "mine"})[0] == {"state": "unknown"}
    assert client.call({"op": "cancel", "entry": "mine"})[0] == {"error": "no such job of yours"}
    assert "error" in client.call({"op": "output", "entry": "mine", "path": "out.bin"})[0]


def test_an_output_streams_after_its_header(serve, munged, tmp_path):
    answer, stream = _client(serve(), munged).fetch({"op": "output", "entry": "mine", "path": "out.bin"})
    assert stream is not None and answer["size"] == 256 * 4096
    with stream:
        assert stream.read() == (tmp_path / "results" / "out.bin").read_bytes()


def test_a_credential_for_another_request_is_refused_and_logged_without_it(serve, munged):
    server = serve()
    cred = munged.munge("0" * 64)
    answer = _raw(server, frame(cred, encode({"op": "cancel", "entry": "mine"})[:-1]))
    assert answer["refused"] is True and "another request" in answer["error"]
    logged = [kw for level, event, kw in server.ctx.log.lines if event.startswith("relay request refused")]
    assert logged and logged[0]["kind"] == "payload" and cred.decode() not in repr(server.ctx.log.lines)


def test_a_replayed_frame_is_refused(serve, munged):
    server = serve()
    assert server.address is not None
    line = encode({"op": "status", "entry": "mine"})[:-1]
    sent = frame(munged.munge(payload_for("{}:{}".format(*server.address), line)), line)
    assert _raw(server, sent)["state"] == "done"
    assert "EMUNGE_CRED_REPLAYED" in _raw(server, sent)["error"]


def test_an_old_credential_is_refused_and_the_relay_sees_an_oserror(serve, munged):
    munged.age = 61
    with pytest.raises(AgentRefused, match="over the 60 s"):
        _client(serve(), munged).call({"op": "status", "entry": "mine"})


def test_a_request_without_a_credential_gets_an_error_and_is_logged(serve):
    answer = _raw(server := serve(), b'{"op": "status", "entry": "mine"}\n\n')
    assert answer == {"error": "the first line is not a MUNGE credential"}
    assert [kw["kind"] for _level, event, kw in server.ctx.log.lines if event == "relay request refused"] \
        == ["frame"]


def test_a_silent_connection_is_answered_at_the_deadline(serve):
    assert "deadline" in _raw(serve(relay_request_timeout_s=0.1), b"MUNGE:")["error"]


def test_connections_over_the_per_host_cap_are_busy(serve, munged):
    server = serve(relay_tcp_max_connections_per_host=2)
    held = [socket.create_connection(server.address, timeout=30) for _ in range(2)]  # type: ignore[arg-type]
    time.sleep(0.1)
    with pytest.raises(AgentBusy, match=r"127\.0\.0\.1 has 2 connections"):
        _client(server, munged).call({"op": "status", "entry": "mine"})
    for conn in held:
        conn.close()


def test_the_uid_cap_is_shared_with_the_unix_socket(serve, munged):
    server = serve(relay_max_connections_per_user=1)
    assert server.relay._admit(OWNER) is None  # one connection of the owner on agent.sock
    with pytest.raises(AgentBusy, match=f"uid {OWNER} has 1"):
        _client(server, munged).call({"op": "status", "entry": "mine"})


def test_the_listener_is_off_by_default_and_a_bad_address_names_the_key(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.config = config_from_mapping({})
    assert start_tcp(RelayServer(ctx)) is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"agent\.relay_tcp_listen: 'nowhere' is not HOST:PORT"):
        config_from_mapping({"agent": {"relay_tcp_listen": "nowhere"}})
