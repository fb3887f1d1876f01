"""User A flooding agent.sock (idle connections, passed fds, slow bytes) cannot stop the agent serving user B.

The agent's open-file limit is set to 1,024 (systemd's default soft limit) so the caps, not the unit's
LimitNOFILE, are what is tested. The attacker raises its own limit and keeps a rolling window of sockets.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RUNUSER, SITE_PYTHON, USER_A, USER_B, USER_ENV, Site, py_as
from waiting import terminate, wait_until

AGENT_NOFILE = 1024
# As the attacker, for argv[4] s: keep argv[2] connections open, each idle or passing fds 16 at a time
# (1,040 per connection); a connection the agent answers or closes is replaced at once.
FLOOD = """
import fcntl, os, resource, select, socket, sys, termios, time
path, window, fds, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "fds", float(sys.argv[4])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
null, held, poll, end = os.open("/dev/null", os.O_RDONLY), {}, select.poll(), time.monotonic() + seconds
attempts = 0
while time.monotonic() < end:
    attempts += 1
    if attempts == window + 1:
        print("flooding", flush=True)
    for fd, _events in poll.poll(0):
        poll.unregister(fd)
        held.pop(fd).close()
    if len(held) >= window:
        time.sleep(0.01)
        continue
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
        for _ in range(65 if fds else 0):
            socket.send_fds(s, [b"{"], [null] * 16)
        drained = time.monotonic() + 5  # until the agent has read it all (bytes it has not consumed)
        while fds and fcntl.ioctl(s, termios.TIOCOUTQ, b"0000") != bytes(4) and time.monotonic() < drained:
            time.sleep(0.01)
    except OSError:
        s.close()
        time.sleep(0.01)
        continue
    held[s.fileno()] = s
    poll.register(s, select.POLLIN | select.POLLHUP)
"""
STATUS = ("import json, sys; from burst_agent.relayproto import call\n"
          "print(json.dumps(call(sys.argv[1], {'op': 'status', 'entry': sys.argv[2]}, timeout=20)[0]))")
SUBMIT = ("import sys; from burst_agent.spool import submit_entry\n"
          "print(submit_entry(sys.argv[1], '#!/bin/bash\\nsleep 30\\n'))")  # a plain-script job


_PIDS: dict[Path, int] = {}


def agent_pid(site: Site) -> int:
    """The agent process (runuser's child), found once at start."""
    if site.root not in _PIDS:
        assert site.proc is not None
        children = Path(f"/proc/{site.proc.pid}/task/{site.proc.pid}/children").read_text().split()
        assert len(children) == 1, children
        _PIDS[site.root] = int(children[0])
    return _PIDS[site.root]


def open_fds(site: Site) -> int:
    """The agent's open files; fails (with its log) once the agent has died."""
    try:
        return len(os.listdir(f"/proc/{agent_pid(site)}/fd"))
    except FileNotFoundError:
        raise AssertionError(f"the agent died:\n{site.logs()[-3000:]}") from None


@pytest.fixture
def limited_site(shared_dir, emu, token) -> Iterator[Site]:
    """The `site` agent, started with a soft limit of 1,024 open files (inherited through runuser)."""
    root = Path(tempfile.mkdtemp(prefix="site-", dir=shared_dir))
    root.chmod(0o755)
    running = Site(root, emu, token)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (AGENT_NOFILE, hard))
    try:
        running.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = Path(f"/proc/{agent_pid(running)}/limits").read_text()
    assert f"Max open files            {AGENT_NOFILE} " in limits, limits
    try:
        yield running
    finally:
        running.stop()


def flood(site: Site, window: int, mode: str, seconds: float) -> subprocess.Popen[str]:
    argv = [str(SITE_PYTHON), "-c", FLOOD, str(site.spool / "agent.sock"), str(window), mode, str(seconds)]
    proc = subprocess.Popen([RUNUSER, "-u", USER_A, "--", *argv], env={**USER_ENV, "HOME": "/"},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "flooding"  # `window` tries made
    return proc


@pytest.fixture
def attack() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        terminate(proc, timeout=10)  # type: ignore[arg-type]


def b_status(site: Site, entry: str) -> dict[str, object]:
    done = py_as(USER_B, STATUS, str(site.spool / "agent.sock"), entry)
    assert done.returncode == 0, f"user B's status call failed under the flood:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout)


def b_submits(site: Site) -> str:
    done = py_as(USER_B, SUBMIT, str(site.spool))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def b_keeps_working(site: Site, peak: list[int]) -> None:
    """B submits a job; intake takes it and B's status calls answer for it; the agent stays up."""
    entry = b_submits(site)

    def taken() -> bool:
        peak.append(open_fds(site))
        return "terminal" in b_status(site, entry)  # a recorded job, not a waiting or rejected entry

    wait_until(taken, 60, "B's job to be taken while A floods the socket", interval=0.5)


@pytest.mark.parametrize("mode", ["idle", "fds"])
def test_a_socket_flood_does_not_stop_the_agent_serving_b(limited_site, attack, mode):
    peak: list[int] = []
    attack.extend(flood(limited_site, 1100 if mode == "idle" else 64, mode, 60) for _ in range(2))
    b_keeps_working(limited_site, peak)
    assert max(peak) < AGENT_NOFILE // 2, f"the agent's open files reached {max(peak)}"
    assert all(proc.poll() is None for proc in attack), "the attacker itself failed"


def test_passed_fds_never_stay_open_in_the_agent(limited_site, attack):
    before = open_fds(limited_site)
    attack.append(flood(limited_site, 4, "fds", 60))
    # Each of the 4 held connections has passed 1,040 fds; none may be in the agent's table.
    assert open_fds(limited_site) < before + 40


def test_a_silent_connection_is_closed_after_the_read_deadline(limited_site):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(str(limited_site.spool / "agent.sock"))
        conn.sendall(b'{"op": "sta')
        answer = conn.recv(4096)
    assert b"error" in answer and b"deadline" in answer, answer


def test_over_cap_connections_get_a_busy_answer_and_others_do_not(limited_site, attack):
    attack.append(flood(limited_site, 64, "idle", 60))
    # Refused at once, before any request is read (sending one may meet a closed socket: EPIPE).
    probe = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(30); "
             "s.connect(sys.argv[1]); print(s.recv(4096).decode())")
    a_answer = py_as(USER_A, probe, str(limited_site.spool / "agent.sock"))
    assert '"busy"' in a_answer.stdout, a_answer
    assert b_status(limited_site, "no-such-entry") == {"state": "unknown"}


def test_the_agent_answers_hostile_frames_with_errors(limited_site):
    entry = b_submits(limited_site).encode()
    wait_until(lambda: limited_site.job(entry.decode()), 60, "B's job to be taken")
    status = b'{"op": "status", "entry": "%s", "offset": ' % entry  # asked as root: every job is visible
    frames = [b"[" * 50_000, status + b"1e400}", status + b"9" * 4000 + b"}", status + b"NaN}",
              status + b"-1e400}", status + b'"x"}', b"\xff\xfe{}"]
    for frame in frames:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(30)
            conn.connect(str(limited_site.spool / "agent.sock"))
            conn.sendall(frame + b"\n")
            assert b'"error"' in conn.recv(65536), frame[:60]
    assert "Traceback" not in limited_site.logs()
