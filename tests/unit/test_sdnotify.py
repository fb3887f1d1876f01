"""sd_notify client against a real unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from burst_agent.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def systemd_socket(tmp_path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield path, sock
    finally:
        sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_ready_with_status_is_one_datagram(systemd_socket):
    path, sock = systemd_socket
    assert Notifier({"NOTIFY_SOCKET": path}).ready("recovered 3 jobs")
    assert received(sock) == {"READY": "1", "STATUS": "recovered 3 jobs"}


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda n: n.watchdog(), {"WATCHDOG": "1"}),
        (lambda n: n.stopping(), {"STOPPING": "1"}),
        (lambda n: n.status("polling\nnow"), {"STATUS": "polling now"}),
    ],
)
def test_each_notice_arrives(systemd_socket, call, expected):
    path, sock = systemd_socket
    assert call(Notifier({"NOTIFY_SOCKET": path}))
    assert received(sock) == expected


def test_reloading_carries_monotonic_usec(systemd_socket):
    path, sock = systemd_socket
    assert Notifier({"NOTIFY_SOCKET": path}).reloading()
    message = received(sock)
    assert message["RELOADING"] == "1"
    assert int(message["MONOTONIC_USEC"]) > 0


def test_abstract_socket_name():
    name = f"burst-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == {"READY": "1"}


def test_unset_socket_is_a_silent_no_op():
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_vanished_socket_reports_false_without_raising(tmp_path):
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_period_for_this_process(env, expected):
    assert watchdog_interval(env) == expected
    assert Notifier(env).watchdog_interval() == expected
