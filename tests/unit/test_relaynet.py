"""Relays over TCP, the relay's side: addresses, request frames, output streams, the agents file, failover."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time

import pytest

from burst_agent.relayaddr import AddressError, AgentAddress, parse_address, parse_addresses, socket_name
from burst_agent.relaynet import (
    AgentRefused,
    NotLeader,
    Stream,
    StreamBroken,
    TcpAgents,
    UnixAgent,
    agent_addresses,
    frame,
    read_frame,
    split_frame,
    spool_agents,
    transport_for,
)
from burst_agent.relayproto import AgentBusy, ProtocolError

CRED = b"MUNGE:AwQFAABU8jnA=:"


def test_addresses_parse_in_order_once_each():
    assert parse_addresses("a.example:7557, 10.0.0.2:1,[fd00::1]:7557 a.example:7557") == (
        AgentAddress("a.example", 7557), AgentAddress("10.0.0.2", 1), AgentAddress("fd00::1", 7557))
    assert str(parse_address("[fd00::1]:80")) == "[fd00::1]:80" and parse_addresses("") == ()
    assert parse_address("0.0.0.0:0", any_port=True).port == 0


@pytest.mark.parametrize("text", ["host", "host:", ":7557", "h:0", "h:65536", "a b:1", "[x]:1", "h:1/x"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(AddressError):
        parse_address(text)


def test_both_ends_name_the_agent_alike():
    assert socket_name(("127.0.0.1", 7557)) == "127.0.0.1:7557"
    assert socket_name(("::ffff:10.0.0.5", 7557, 0, 0)) == "10.0.0.5:7557"  # a dual-stack listener's view
    assert socket_name(("fd00::1", 7557, 0, 0)) == "[fd00::1]:7557"


def test_a_frame_is_the_credential_then_the_request():
    assert split_frame(frame(CRED, b'{"op":"status"}')) == (CRED, b'{"op":"status"}')
    too_long = b"MUNGE:" + b"A" * 5000 + b":\n{}\n"
    for bad in (b'{"op":"status"}\n', b'{"op":"status"}\n{"x":1}\n', CRED + b"\n{}", too_long):
        with pytest.raises(ProtocolError):
            split_frame(bad)


def test_read_frame_keeps_the_deadline_and_the_size_cap():
    agent, peer = socket.socketpair()
    with agent, peer:
        peer.sendall(CRED + b"\n")
        with pytest.raises(ProtocolError, match="deadline"):
            read_frame(agent, time.monotonic() + 0.1)
        peer.sendall(b"x" * 3000)
        with pytest.raises(ProtocolError, match="longer than 2000"):
            read_frame(agent, time.monotonic() + 10, limit=2000)
    agent, peer = socket.socketpair()
    with agent, peer:
        peer.sendall(frame(CRED, b"{}"))
        assert read_frame(agent, time.monotonic() + 10) == (CRED, b"{}")


def test_a_stream_gives_exactly_its_size_then_breaks_if_cut_short():
    agent, relay = socket.socketpair()
    with agent:
        agent.sendall(b"0123456789tail")
        stream = io.BufferedReader(Stream(relay.makefile("rb"), relay, 10))
        assert stream.read() == b"0123456789"
        stream.close()
    agent, relay = socket.socketpair()
    agent.sendall(b"0123")
    agent.close()
    with io.BufferedReader(Stream(relay.makefile("rb"), relay, 10)) as stream, \
            pytest.raises(StreamBroken, match="6 bytes early"):
        stream.read()


def test_the_agents_file_counts_only_when_the_spool_owner_wrote_it(tmp_path):
    assert spool_agents(tmp_path) == () and isinstance(transport_for(tmp_path / "agent.sock"), UnixAgent)
    (tmp_path / "agents").write_text("# the leader first\nh1:7557\nh2:7557  # the standby\n")
    os.chmod(tmp_path / "agents", 0o644)
    assert agent_addresses(None, tmp_path) == (AgentAddress("h1", 7557), AgentAddress("h2", 7557))
    assert agent_addresses("h3:1", tmp_path) == (AgentAddress("h3", 1),)  # --agent wins
    os.chmod(tmp_path / "agents", 0o664)
    with pytest.raises(ValueError, match="group and others cannot write"):
        spool_agents(tmp_path)


def _agent(answers: list[dict]) -> tuple[socket.socket, AgentAddress, list[bytes]]:
    """A fake agent on loopback: reads each frame and gives the next answer."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                seen.append(b"".join(read_frame(conn, time.monotonic() + 10)))
                conn.sendall(json.dumps(answer).encode() + b"\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener, AgentAddress("127.0.0.1", listener.getsockname()[1]), seen


def _closed_port() -> AgentAddress:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return AgentAddress("127.0.0.1", sock.getsockname()[1])


def test_each_address_is_tried_until_one_answers_and_that_one_is_remembered():
    listener, live, seen = _agent([{"state": "running"}, {"state": "done"}])
    with listener:
        agents = TcpAgents([_closed_port(), live], munge=lambda payload: CRED)
        assert agents.call({"op": "status"}) == ({"state": "running"}, [])
        assert agents.current == 1
        assert agents.call({"op": "status"})[0] == {"state": "done"}
    assert seen[0].startswith(CRED) and b'"op":"status"' in seen[0]


@pytest.mark.parametrize(("answer", "raised"), [
    ({"error": "not the leader", "not_leader": True}, ConnectionError),
    ({"error": "credential refused: replayed", "refused": True}, AgentRefused),
    ({"error": "busy: uid 5 has 16", "busy": True}, AgentBusy),
])
def test_a_standby_a_refusal_or_a_busy_agent_moves_on_to_the_next_address(answer, raised):
    first, one, _ = _agent([answer])
    second, two, _ = _agent([{"state": "running"}])
    with first, second:
        agents = TcpAgents([one, two], munge=lambda payload: CRED)
        assert agents.call({"op": "status"})[0] == {"state": "running"} and agents.current == 1
    lone, three, _ = _agent([answer])
    with lone, pytest.raises(raised):
        TcpAgents([three], munge=lambda payload: CRED).call({"op": "status"})
    assert issubclass(NotLeader, ConnectionError)


def test_no_agent_answering_is_one_oserror_naming_each():
    with pytest.raises(ConnectionError, match="no agent answered") as failed:
        TcpAgents([_closed_port(), _closed_port()], munge=lambda payload: CRED).call({"op": "status"})
    assert str(failed.value).count("127.0.0.1:") == 2
