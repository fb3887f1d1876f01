"""Fuzz the relay socket's request path: any frame from any uid gets one JSON answer, never an exception.

Default: BURST_FUZZ_EXAMPLES examples per test (2,000). Long run (docs/bad-input.md):
    BURST_FUZZ_EXAMPLES=150000 .venv/bin/pytest -q tests/badinput/test_fuzz_relayproto.py
"""

from __future__ import annotations

import json
import os
import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jobkit import make_job, plan

from burst_agent.config import Config
from burst_agent.lifecycle import JobState
from burst_agent.relayproto import MAX_REQUEST, ProtocolError, decode, read_message
from burst_agent.relayserver import RelayServer
from burst_agent.spool import Spool
from burst_agent.store import JobStore

EXAMPLES = int(os.environ.get("BURST_FUZZ_EXAMPLES", "2000"))
# A long campaign outlasts the suite's 300 s per-test timeout.
pytestmark = pytest.mark.timeout(0 if EXAMPLES > 10_000 else 300)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
ME = os.getuid()
ANSWER_KEYS = {  # what each op may answer besides {"error": ...}
    "status": {"state", "terminal", "remote_status", "remote_job_id", "exit_code", "reason", "log",
               "log_size", "hardware", "cores", "phase", "record"},
    "cancel": {"id", "state", "terminal"}, "outputs": {"files"}, "output": {"path", "size"},
    "delivered": {"ok"},
    "jobs": {"jobs", "not_shown"}, "find": {"entry", "state"},
    "resume": {"log_file", "offset", "delivered", "workdir", "state"},
}

HUGE = st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 4000, "9" * 5000, "-0",
                        "1" + "0" * 19, "18446744073709551616", "1.0", "true", "null"])
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 2**64), st.floats(),
              st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`common` four times in five (one_of gives each branch the same weight)."""
    return st.integers(0, 4).flatmap(lambda k: rare if k == 0 else common)


OPS = mostly(st.sampled_from(sorted(ANSWER_KEYS)),
             st.sampled_from(["", "STATUS", "__init__", "handle"]) | JSONISH)
ENTRIES = mostly(st.sampled_from(["live", "done"]),
                 st.sampled_from(["", ".", "..", "../live", "done/..", "x\x00y"]) | JSONISH)
FIELDS = st.fixed_dictionaries({"op": OPS}, optional={
    "entry": ENTRIES,
    "path": st.one_of(st.sampled_from(["a.txt", "sub/b.txt", "../state.db", "/etc/passwd", "sub/../a.txt",
                                       ".burst-staging/x", "a.txt\x00", "sub"]), JSONISH),
    "offset": st.one_of(st.integers(-2, 2000), st.integers(2**40, 2**64), st.integers(), JSONISH),
    "uid": st.integers(), "owner_uid": st.integers(),
})


def _text(fields: dict[str, Any], huge: str | None, tail: bytes, cut: int | None) -> bytes:
    """JSON with, optionally, the offset's text replaced by `huge`, a cut, and anything after it."""
    body = json.dumps(fields)
    if huge is not None and "offset" in fields:
        body = body.replace(json.dumps(fields["offset"]), huge, 1)
    raw = body.encode("utf-8", "surrogatepass")
    return (raw[:cut] if cut is not None else raw) + tail


TAILS = st.sampled_from([b"", b"\n{junk", b"\r\n", b" \n"])
SHAPED = st.builds(_text, FIELDS, mostly(st.none(), HUGE), mostly(st.just(b"\n"), TAILS),
                   mostly(st.none(), st.integers(0, 40)))
ODD = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda open_, n, tail: open_ * n + tail, st.sampled_from([b"[", b'{"a":', b'{"op":[']),
              st.integers(1, 40_000), st.sampled_from([b"", b"\n", b"]" * 3])),
    st.builds(lambda n: b'{"op": "status", "entry": "live", "pad": "' + b"x" * n + b'"}\n',
              st.integers(MAX_REQUEST - 60, MAX_REQUEST + 60)),
)
FRAMES = mostly(SHAPED, ODD)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> RelayServer:
    """A RelayServer on a real store: a live job and a finished one with outputs, both the test user's."""
    root = tmp_path_factory.mktemp("relayfuzz")
    log = root / "job.log"
    log.write_bytes(b"remote log line\n" * 64)
    (root / "out" / "sub").mkdir(parents=True)
    (root / "out" / "a.txt").write_text("a")
    (root / "out" / "sub" / "b.txt").write_text("b")
    store = JobStore(root / "state.db")
    make_job(store, "live", JobState.TRANSLATED, owner_uid=ME,
             job_plan=plan(stdout_path=str(log), output_dir=str(root / "live-out")))
    done = make_job(store, "done", JobState.TRANSLATED, owner_uid=ME,
                    job_plan=plan(stdout_path=str(log), output_dir=str(root / "out")))
    store.transition(done.id, JobState.FAILED, "fuzz")
    quiet = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
    ctx = SimpleNamespace(config=Config(), spool=Spool(root / "spool").ensure(), store=store, log=quiet,
                          clock=time.time, job_log=lambda job: quiet)
    return RelayServer(ctx)  # type: ignore[arg-type]


def _exchange(relay: RelayServer, frame: bytes, uid: int) -> dict[str, Any]:
    agent, peer = socket.socketpair()
    with agent, peer:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MAX_REQUEST)
        peer.sendall(frame)
        peer.shutdown(socket.SHUT_WR)
        relay.handle(agent, uid)
        answer, fds = read_message(peer)
    for fd in fds:
        os.close(fd)
    assert len(fds) <= 1 and (not fds or answer.get("path")), (answer, fds)
    return answer


@FUZZ
@given(FRAMES, st.sampled_from([ME, ME + 1, 0]))
def test_any_frame_gets_one_json_answer(relay: RelayServer, frame: bytes, uid: int) -> None:
    answer = _exchange(relay, frame, uid)
    # The mix of answers: --hypothesis-show-statistics
    event(f"answer: {answer.get('error', '')[:20] or ','.join(sorted(answer))}")
    if "error" in answer:
        assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"]
        return
    try:
        op = json.loads(frame.split(b"\n")[0])["op"]
    except Exception as exc:  # the agent answered something it could not have parsed
        raise AssertionError(f"a non-error answer {answer} to an unparsable frame {frame[:80]!r}") from exc
    assert set(answer) <= ANSWER_KEYS[op] or answer == {"state": "unknown"}, (op, answer)


@FUZZ
@given(st.one_of(FRAMES, st.binary()))
def test_decode_raises_only_protocol_errors(frame: bytes) -> None:
    try:
        message = decode(frame)
    except ProtocolError as exc:
        assert str(exc)
        return
    assert isinstance(message, dict)


def test_the_frames_the_red_team_sent(relay: RelayServer) -> None:
    for frame in (b"[" * 100_000 + b"\n", b'{"op": "status", "entry": "live", "offset": 1e400}\n',
                  b'{"op": "status", "entry": "live", "offset": ' + b"9" * 4000 + b"}\n"):
        assert "error" in _exchange(relay, frame[: MAX_REQUEST - 1] + b"\n", ME)


def test_a_good_request_still_gets_its_answer(relay: RelayServer) -> None:
    assert _exchange(relay, b'{"op": "outputs", "entry": "done"}\n', ME) == {"files": ["a.txt", "sub/b.txt"]}
    assert _exchange(relay, b'{"op": "status", "entry": "live", "offset": 1000}\n', ME)["log_size"] == 1024
