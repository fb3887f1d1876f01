"""Uploads and downloads against a real HTTP server on 127.0.0.1: framing, resume, md5 checks."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from burst_agent.config import RateLimits
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.errors import IntegrityError
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token

CONTENT = bytes(range(256)) * 12289  # ~3 MiB: several 1 MiB chunks
MD5 = hashlib.md5(CONTENT).hexdigest()
POLL_S = 0.01  # serve_forever's shutdown check; its 0.5 s default is a wait in every teardown


class FileServer(ThreadingHTTPServer):
    """Serves CONTENT at /api/v2/files/f1/contents/ (Range optional); records what it was sent."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.honour_range = True
        self.break_after: int | None = None  # send this many bytes of the body, then drop the connection
        self.requests: list[dict[str, str]] = []
        self.uploads: list[bytes] = []


class Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(dict(self.headers))
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(match.group(1)) if match and self.server.honour_range else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}")
        self.send_header("Content-Length", str(len(CONTENT) - start))
        self.end_headers()
        body = CONTENT[start:]
        if self.server.break_after is not None:
            body, self.server.break_after = body[: self.server.break_after], None
            self.close_connection = True
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.server.requests.append(dict(self.headers))
        self.server.uploads.append(self.rfile.read(int(self.headers["Content-Length"])))
        payload = json.dumps({"id": "up1", "name": "in.bin"}).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server():
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, args=(POLL_S,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(server):
    retry = RetryPolicy(max_retries=2, sleep=lambda s: None)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    return RescaleClient(base, Token("tok-xyz"), retry=retry, budgets=RateBudgets(RateLimits(enabled=False)))


def test_upload_streams_multipart_with_content_length(server, client, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(CONTENT)
    seen = []
    assert client.upload_file(src, progress=lambda done, total: seen.append((done, total)))["id"] == "up1"
    headers = server.requests[0]
    assert "Transfer-Encoding" not in headers
    assert int(headers["Content-Length"]) == len(server.uploads[0])
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'Content-Disposition: form-data; name="file"; filename="in.bin"' in server.uploads[0]
    assert CONTENT in server.uploads[0] and seen[-1][0] == seen[-1][1]


def test_download_verifies_and_renames_into_place(server, client, tmp_path):
    dest = tmp_path / "out.bin"
    result = client.download_file("f1", dest, expected_md5=MD5, expected_size=len(CONTENT))
    assert dest.read_bytes() == CONTENT and not (tmp_path / "out.bin.partial").exists()
    assert (result.md5, result.size, result.resumed_from) == (MD5, len(CONTENT), 0)
    assert "Range" not in server.requests[0]


def test_download_resumes_a_partial_with_range(server, client, tmp_path):
    (tmp_path / "out.bin.partial").write_bytes(CONTENT[:1_000_000])
    result = client.download_file("f1", tmp_path / "out.bin", expected_md5=MD5)
    assert server.requests[0]["Range"] == "bytes=1000000-"
    assert result.resumed_from == 1_000_000 and result.md5 == MD5
    assert (tmp_path / "out.bin").read_bytes() == CONTENT


def test_download_restarts_when_server_ignores_range(server, client, tmp_path):
    server.honour_range = False
    (tmp_path / "out.bin.partial").write_bytes(b"x" * 5000)  # would corrupt the file if appended to
    result = client.download_file("f1", tmp_path / "out.bin", expected_md5=MD5)
    assert result.resumed_from == 0 and (tmp_path / "out.bin").read_bytes() == CONTENT


def test_download_md5_mismatch_deletes_the_partial(server, client, tmp_path):
    (tmp_path / "out.bin.partial").write_bytes(b"garbage!" * 1000)  # a bad prefix, resumed in good faith
    with pytest.raises(IntegrityError, match="md5") as info:
        client.download_file("f1", tmp_path / "out.bin", expected_md5=MD5)
    assert "tok-xyz" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_broken_off_midway_is_resumed(server, client, tmp_path):
    server.break_after = 1_500_000
    result = client.download_file("f1", tmp_path / "out.bin", expected_md5=MD5, expected_size=len(CONTENT))
    assert [r.get("Range") for r in server.requests] == [None, f"bytes={result.resumed_from}-"]
    assert 0 < result.resumed_from <= 1_500_000  # whole chunks received before the break are kept
    assert (tmp_path / "out.bin").read_bytes() == CONTENT
