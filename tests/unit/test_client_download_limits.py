"""Downloads never write past the declared size, over real HTTP on 127.0.0.1; honest framings still pass."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from burst_agent.config import RateLimits
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.errors import SizeMismatchError
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token

DATA = b"0123456789"
MD5 = hashlib.md5(DATA).hexdigest()
POLL_S = 0.01  # serve_forever's shutdown check; its 0.5 s default is a wait in every teardown


class Server(ThreadingHTTPServer):
    daemon_threads = True
    framing = "length"  # "length" (true Content-Length), "chunked", "close" (none), or headers to send
    headers: dict[str, str] = {}
    status = 200


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        self.send_response(srv.status)
        framing = {"length": {"Content-Length": str(len(DATA))}, "chunked": {"Transfer-Encoding": "chunked"},
                   "close": {"Connection": "close"}}.get(srv.framing, srv.headers)
        for key, value in framing.items():
            self.send_header(key, value)
        self.end_headers()
        if srv.framing == "chunked":
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(DATA), DATA))
        else:
            self.wfile.write(DATA)
        self.close_connection = srv.framing != "length"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, args=(POLL_S,), daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(server: Server) -> RescaleClient:
    return RescaleClient(f"http://127.0.0.1:{server.server_address[1]}", Token("t"),
                         retry=RetryPolicy(max_retries=1, sleep=lambda s: None),
                         budgets=RateBudgets(RateLimits(enabled=False)))


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_an_honest_body_of_the_declared_size_arrives_whatever_its_framing(server, client, tmp_path, framing):
    server.framing = framing
    result = client.download_file("f", tmp_path / "f", expected_md5=MD5, expected_size=len(DATA))
    assert (tmp_path / "f").read_bytes() == DATA and result.size == len(DATA)


def test_a_body_shorter_than_its_content_length_claims_is_a_size_lie(server, client, tmp_path):
    server.framing, server.headers = "custom", {"Content-Length": "5", "Connection": "close"}
    with pytest.raises(SizeMismatchError, match="announces 5 bytes, the file object declares 10"):
        client.download_file("f", tmp_path / "f", expected_md5=MD5, expected_size=len(DATA))
    assert list(tmp_path.iterdir()) == []


def test_a_resume_whose_content_range_gives_another_total_is_a_size_lie(server, client, tmp_path):
    (tmp_path / "f.partial").write_bytes(DATA[:3])
    server.status, server.framing = 206, "custom"
    server.headers = {"Content-Range": "bytes 3-9/999", "Content-Length": "7", "Connection": "close"}
    with pytest.raises(SizeMismatchError, match="announces 999 bytes"):
        client.download_file("f", tmp_path / "f", expected_md5=MD5, expected_size=len(DATA))
    assert list(tmp_path.iterdir()) == []  # the resumed partial is gone too


def test_a_declared_empty_file_refuses_any_byte(server, client, tmp_path):
    server.framing = "close"
    with pytest.raises(SizeMismatchError, match="more than the 0 bytes declared"):
        client.download_file("f", tmp_path / "f", expected_size=0)
    assert list(tmp_path.iterdir()) == []
