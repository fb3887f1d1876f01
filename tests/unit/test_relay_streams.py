"""The relay's delivery over streams: written confined, fetched again if cut short, kept if never whole."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any, BinaryIO

from burst_agent.relay import Relay
from burst_agent.relaynet import StreamBroken


class _Cut(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise StreamBroken(errno.ECONNRESET, "the output stream ended 5 bytes early")


class _Agent:
    """A transport whose `output` streams are cut short `cuts` times, then whole."""

    def __init__(self, cuts: int) -> None:
        self.cuts, self.asked = cuts, []

    def call(self, message: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        self.asked.append(message["op"])
        return ({"files": ["sub/out.txt", "../escape"]} if message["op"] == "outputs" else {"ok": True}), []

    def fetch(self, message: dict[str, Any]) -> tuple[dict[str, Any], BinaryIO | None]:
        self.asked.append(message["op"])
        if self.cuts:
            self.cuts -= 1
            return {"size": 5}, io.BufferedReader(_Cut())
        return {"size": 5}, io.BytesIO(b"hello")

    def here(self) -> bool:
        return True


def _relay(tmp_path: Path, agent: _Agent) -> tuple[Relay, io.BytesIO]:
    out = io.BytesIO()
    relay = Relay(tmp_path / "spool", out)
    relay.transport = agent
    return relay, out


def test_a_stream_cut_short_is_fetched_again_and_written_confined(tmp_path):
    agent = _Agent(cuts=2)
    relay, out = _relay(tmp_path, agent)
    relay._deliver("e1", tmp_path)
    assert (tmp_path / "sub" / "out.txt").read_bytes() == b"hello"
    assert not (tmp_path.parent / "escape").exists() and b"refused" in out.getvalue()
    assert agent.asked[-1] == "delivered" and agent.asked.count("output") == 4  # 2 cut, 1 whole, 1 refused
    assert list((tmp_path / "sub").iterdir()) == [tmp_path / "sub" / "out.txt"]  # no temp file left


def test_an_output_that_never_arrives_whole_is_left_with_the_agent(tmp_path):
    agent = _Agent(cuts=99)
    relay, out = _relay(tmp_path, agent)
    relay._deliver("e1", tmp_path)
    assert "delivered" not in agent.asked and not (tmp_path / "sub" / "out.txt").exists()
    assert b"did not arrive whole; the agent keeps them" in out.getvalue()
