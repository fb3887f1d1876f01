"""A hostile Rescale API of the test's own on 127.0.0.1: size lies, malformed records, names that lie, 429s.

The real client, the real stage-out (collect through the agent's worker step) and a real store; only the
server is the test's. Issue 10, items 5, 7 and 8.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jobkit import make_job, plan
from waiting import wait_until

from burst_agent.agent import Agent
from burst_agent.config import RateLimits, config_from_mapping
from burst_agent.lifecycle import JobState
from burst_agent.logsetup import get_logger
from burst_agent.pipeline.context import Catalogue, Context
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.errors import SizeMismatchError
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token
from burst_agent.spool import Spool
from burst_agent.store import JobRecord, JobStore

BLOCK = 64 << 10


@dataclass
class Served:
    """What the server answers for one file id: a body, a Content-Length ("auto": the true one; None:
    none, close-delimited; else that lie), then `endless` more bytes; or a status with no body."""

    body: bytes = b""
    length: str | None = "auto"
    endless: int = 0
    status: int = 200


class Hostile(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.files: dict[str, Served] = {}
        self.listing: list[Any] = []
        self.throttle = 0  # answer this many listing requests 429 with Retry-After: 1
        self.hits: Counter[str] = Counter()  # content GETs per file id
        self.sent: Counter[str] = Counter()  # body bytes written per file id
        self.ended: Counter[str] = Counter()  # content answers finished (or cut by the client)

    def serve(self, file_id: str, path: str, served: Served, **record: Any) -> None:
        """Offer a file: listed with its true size and md5 unless `record` overrides them."""
        true = {"decryptedSize": len(served.body), "md5": hashlib.md5(served.body).hexdigest()}
        self.files[file_id] = served
        self.listing.append({"id": file_id, "relativePath": path, **true, **record})


class Handler(BaseHTTPRequestHandler):
    server: Hostile

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if match := re.fullmatch(r"/api/v2/files/([^/]+)/contents/", path):
            self._contents(match.group(1))
        elif re.fullmatch(r"/api/v2/jobs/[^/]+/files/", path) and self.server.throttle:
            self.server.throttle -= 1
            self._json({"detail": "slow down"}, 429, {"Retry-After": "1"})
        elif re.fullmatch(r"/api/v2/jobs/[^/]+/files/", path):
            listing = self.server.listing
            self._json({"count": len(listing), "next": None, "previous": None, "results": listing})
        else:
            self._json({"detail": "Not found."}, 404)

    def _contents(self, file_id: str) -> None:
        srv = self.server
        srv.hits[file_id] += 1
        served = srv.files.get(file_id, Served(status=404))
        if served.status != 200:
            self._json({"detail": "Not found."}, served.status)
            return
        self.send_response(200)
        length = str(len(served.body)) if served.length == "auto" else served.length
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        try:
            for data in [served.body[i : i + BLOCK] for i in range(0, len(served.body), BLOCK)] + \
                    [bytes(BLOCK)] * (served.endless // BLOCK):
                self.wfile.write(data)
                srv.sent[file_id] += len(data)
        except OSError:  # the client hung up: what a refusal looks like from here
            pass
        finally:
            srv.ended[file_id] += 1


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(hostile: Hostile) -> RescaleClient:
    retry = RetryPolicy(max_retries=1, sleep=lambda s: None)
    return RescaleClient(hostile.url, Token("tok-hostile"), retry=retry,
                         budgets=RateBudgets(RateLimits(enabled=False)), read_timeout=10)


@dataclass
class Stage:
    """One job in staging_out whose outputs come from the hostile server, and the agent that drives it."""

    agent: Agent
    job: JobRecord
    out: Path

    def run(self, passes: int = 6) -> tuple[JobRecord, int]:
        """The agent's worker step until the job ends (backoff skipped); (final record, passes used)."""
        store = self.agent.ctx.store
        for used in range(1, passes + 1):
            self.agent._work(self.job.id)
            job = store.get(self.job.id)
            assert job is not None
            if job.terminal:
                return job, used
        return job, passes

    def stdout(self) -> str:
        return (self.out / "slurm-1.out").read_text()


@pytest.fixture
def stage(hostile: Hostile, client: RescaleClient, tmp_path: Path) -> Iterator[Stage]:
    config = config_from_mapping({
        "api": {"base_url": hostile.url},
        "agent": {"spool_dir": str(tmp_path / "spool"), "state_db": str(tmp_path / "state.db")},
        "staging": {"free_space_margin_bytes": 0, "download_concurrency": 4},
    })
    store = JobStore(tmp_path / "state.db")
    ctx = Context(config=config, client=client, store=store, spool=Spool(tmp_path / "spool").ensure(),
                  catalogue=Catalogue(fetch=list), log=get_logger())
    out = tmp_path / "work"
    out.mkdir()
    job = make_job(store, "e1", JobState.STAGING_OUT, owner_uid=0, remote_job_id="JOB1",
                   job_plan=plan(output_dir=str(out), stdout_path=str(out / "slurm-1.out")))
    hostile.serve("exit", "burst_exit_code", Served(b"0\n"))
    hostile.serve("good", "results/good.txt", Served(b"the good output\n"))
    yield Stage(Agent(ctx), job, out)
    store.close()


# -- item 5: a server that fills the disk ------------------------------------------------------------


def test_endless_body_is_cut_at_the_declared_size_and_the_partial_deleted(hostile, client, tmp_path):
    hostile.files["f6"] = Served(b"abcdef", length=None, endless=400 << 20)  # no Content-Length
    (tmp_path / "f.partial").write_bytes(b"abc")  # a partial from an earlier try is not kept either
    with pytest.raises(SizeMismatchError, match="more than the 6 bytes declared"):
        client.download_file("f6", tmp_path / "f", expected_md5=hashlib.md5(b"abcdef").hexdigest(),
                             expected_size=6)
    wait_until(lambda: hostile.ended["f6"] == 1, 10, "the server to notice the hang-up")
    assert list(tmp_path.iterdir()) == [] and hostile.hits["f6"] == 1
    assert hostile.sent["f6"] < 40 << 20  # socket buffers at most, not 400 MB


def test_content_length_over_the_declared_size_is_refused_before_the_body(hostile, client, tmp_path):
    hostile.files["big"] = Served(bytes(50 << 20))
    with pytest.raises(SizeMismatchError, match="52428800 bytes"):
        client.download_file("big", tmp_path / "f", expected_size=10)
    wait_until(lambda: hostile.ended["big"] == 1, 10, "the server to notice the hang-up")
    assert list(tmp_path.iterdir()) == [] and hostile.sent["big"] < 40 << 20


def test_a_proven_size_lie_is_one_failure_never_retried(hostile, stage):
    hostile.serve("liar", "big.dat", Served(bytes(50 << 20)), decryptedSize=10)
    job, _ = stage.run()
    assert job.state is JobState.DONE and hostile.hits["liar"] == 1
    assert "big.dat" in job.result.reason and "SizeMismatchError" in stage.stdout()
    assert (stage.out / "results/good.txt").read_bytes() == b"the good output\n"
    assert not (stage.out / "big.dat").exists() and not (stage.out / ".burst-staging").exists()


# -- item 7: one malformed record must not wedge the stage-out ----------------------------------------


def test_malformed_records_are_refused_one_by_one(hostile, stage):
    hostile.serve("bad1", "abc.dat", Served(b"123"), decryptedSize="abc")
    hostile.serve("bad2", "nomd5.dat", Served(b"123"), md5=None)
    hostile.listing += [42, "results/x", None, {"id": "bad3", "relativePath": 7}]
    job, passes = stage.run()
    assert (job.state, job.result.exit_code, passes) == (JobState.DONE, 0, 1)
    assert (stage.out / "results/good.txt").exists()
    assert sorted(p.name for p in stage.out.iterdir()) == ["results", "slurm-1.out"]
    for text in ("abc.dat", "nomd5.dat", "listing item 4", "listing item 6"):
        assert text in job.result.reason and text in stage.stdout()
    assert hostile.hits["bad1"] == hostile.hits["bad2"] == 0  # refused before any download


def test_md5_mismatch_and_404_are_retried_a_bounded_number_of_times(hostile, stage):
    hostile.serve("corrupt", "corrupt.dat", Served(b"not what was hashed"), md5="0" * 32)
    hostile.serve("gone", "gone.dat", Served(status=404), decryptedSize=5, md5="1" * 32)
    job, passes = stage.run(passes=10)
    assert (job.state, passes) == (JobState.DONE, 3)
    assert hostile.hits["corrupt"] == hostile.hits["gone"] == 3
    assert "outputs not delivered" in job.result.reason
    assert "corrupt.dat" in job.result.reason and "gone.dat" in job.result.reason
    assert (stage.out / "results/good.txt").exists() and not (stage.out / "corrupt.dat").exists()


def test_a_failed_exit_code_file_ends_the_job_failed_not_wedged(hostile, stage):
    hostile.listing[0]["md5"] = "2" * 32  # the exit code never verifies
    job, passes = stage.run(passes=10)
    assert (job.state, job.result.exit_code, passes) == (JobState.FAILED, None, 3)
    assert "burst_exit_code" in job.result.reason
    assert (stage.out / "results/good.txt").exists()


# -- item 8: names that display as something else; 429 pacing -----------------------------------------


@pytest.mark.parametrize("name", ["gpj.\u202eexe", "zero\u200bwidth", "bom\ufeff", "bad\udcff",
                                  "replaced\ufffd", "line\u2028sep"])
def test_names_that_display_as_something_else_are_refused_and_escaped(hostile, stage, name):
    hostile.serve("trick", name, Served(b"payload"))
    job, _ = stage.run()
    assert job.state is JobState.DONE and hostile.hits["trick"] == 0
    assert sorted(p.name for p in stage.out.iterdir()) == ["results", "slurm-1.out"]
    escaped = name.encode("ascii", "backslashreplace").decode()
    assert escaped in job.result.reason and escaped in stage.stdout()
    assert name not in job.result.reason + stage.stdout()


def test_a_429_waits_retry_after_without_raising_the_exponent(hostile, stage):
    backoff = stage.agent.backoff
    for _ in range(4):  # four failed steps: the next plain failure would wait 2 s * 2**4
        backoff.failed(stage.job.id)
    hostile.throttle = 2  # the client retries once, then the agent sees the 429
    stage.agent._work(stage.job.id)
    attempts, due = backoff._due[stage.job.id]
    assert attempts == 4 and due - backoff.clock() <= 1.25
    assert stage.run()[0].state is JobState.DONE
