"""The agent as a service: sd_notify readiness and status, metrics that match what happened, SIGHUP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket

import requests
from waiting import wait_until


def _notify_socket(rig):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = rig.root / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(0.2)
    return sock, path


def _received(sock) -> str:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return "\n".join(messages)


def _metrics_port(rig) -> int:
    def find():
        for line in rig.logs().splitlines():
            if '"metrics endpoint up"' in line:
                return json.loads(line)["port"]
        return None

    return wait_until(find, 20, "the metrics endpoint")


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in exposition"
    return float(match.group(1))


def test_ready_notification_and_metrics_match_what_happened(rig, monkeypatch):
    sock, path = _notify_socket(rig)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    rig.start()
    assert "READY=1" in wait_until(lambda: _received(sock), 20, "sd_notify READY")
    ok = rig.submit("#!/bin/bash\necho ok > ok.txt\n", rig.workdir("m1", {"in.bin": os.urandom(5000)}))
    bad = rig.submit("#!/bin/bash\nexit 3\n", rig.workdir("m2"), job_id="2")
    rig.wait_terminal(ok), rig.wait_terminal(bad)
    text = requests.get(f"http://127.0.0.1:{_metrics_port(rig)}/metrics", timeout=5).text
    assert _value(text, "burst_agent_jobs_submitted_total") == 2
    assert _value(text, 'burst_agent_jobs_finished_total{state="done"}') == 1
    assert _value(text, 'burst_agent_jobs_failed_total{reason="exit_code"}') == 1
    assert _value(text, 'burst_agent_transfer_bytes_total{direction="upload"}') > 5000
    assert _value(text, 'burst_agent_api_requests_total{code="201",endpoint="/jobs/",method="POST"}') == 2
    assert rig.emulator.token not in text
    assert "STATUS=" in wait_until(lambda: _received(sock), 20, "an sd_notify STATUS line")


def test_sighup_reloads_and_a_bad_config_is_kept_out(rig):
    rig.start()
    _metrics_port(rig)
    text = rig.config_path.read_text()
    rig.config_path.write_text(text.replace("poll_interval_s: 5", "poll_interval_s: 6"))
    rig.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config reloaded" in rig.logs(), 20, "config reloaded")
    rig.config_path.write_text("agent:\n  poll_interval_s: 1\n")
    rig.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config reload failed" in rig.logs(), 20, "config reload failed")
    assert "agent.poll_interval_s: 1 is below the minimum 5" in rig.logs()
    assert rig.proc.poll() is None
