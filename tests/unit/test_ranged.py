"""Ranged downloads: part planning, the in-order md5 over parts that finish out of order, the journal,
and what a server that does not honour a range gets (one stream), against an in-memory fake API."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
from pathlib import Path

import pytest

from burst_agent.rescale import ranged, transfer
from burst_agent.rescale.errors import SizeMismatchError
from burst_agent.rescale.ranged import Ledger, gaps, plan
from burst_agent.rescale.retry import RetryPolicy

KIB, MIB = 1 << 10, 1 << 20
DATA = bytes(range(251)) * (4 * MIB // 251 + 1)  # a period prime to every part size: misplaced bytes show
MD5 = hashlib.md5(DATA).hexdigest()


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.status_code, self.headers = status, headers
        self.raw = type("Raw", (), {"_fp": io.BytesIO(body)})()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeApi:
    """Serves DATA: HEAD, and GET with or without a Range; `answer` may rewrite a part (bytes=a-b)."""

    def __init__(self, data: bytes = DATA) -> None:
        self.data, self.retry = data, RetryPolicy(max_retries=2, sleep=lambda s: None)
        self.head = {"Accept-Ranges": "bytes", "Content-Length": str(len(data))}
        self.ranges: list[tuple[int, int]] = []  # the parts asked for
        self.streams: list[str] = []  # the single stream's GETs: their Range header, or ""
        self.answer = lambda start, end, response: response
        self.lock = threading.Lock()

    def path(self, template: str, **ids: str | int) -> str:
        return "/api/v2" + template.format(**ids)

    def call(self, *args: object, **kw: object) -> None:
        raise AssertionError("not used")

    def request(self, method: str, template: str, ids: object = None, *, headers: dict[str, str],
                stream: bool = False) -> Response:
        if method == "HEAD":
            return Response(200, self.head)
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("Range", ""))
        if not match or not match.group(2):
            self.streams.append(headers.get("Range", ""))
        if not match:
            return Response(200, {"Content-Length": str(len(self.data))}, self.data)
        start, end = int(match.group(1)), int(match.group(2) or len(self.data) - 1) + 1
        headers = {"Content-Range": f"bytes {start}-{end - 1}/{len(self.data)}",
                   "Content-Length": str(end - start)}
        response = Response(206, headers, self.data[start:end])
        if not match.group(2):
            return response  # the single stream's resume: never rewritten
        with self.lock:
            self.ranges.append((start, end))
        return self.answer(start, end, response)


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranged, "ALIGN", 64 * KIB)
    monkeypatch.setattr(ranged, "MIN_PART", 256 * KIB)
    monkeypatch.setattr(ranged, "AHEAD", 8 * MIB)  # parts of at most 8 MiB / (2 x 4) = 1 MiB


def _download(api: FakeApi, dest: Path) -> transfer.DownloadResult:
    return transfer.download(api, "f", dest, expected_md5=MD5, expected_size=len(DATA), connections=4,
                             range_min_bytes=MIB)


def test_parts_ramp_up_over_the_first_round_then_shrink_towards_the_end():
    parts = plan(40 * MIB, [], connections=4)  # up to 1 MiB, at least 256 KiB
    assert gaps(40 * MIB, parts) == [] and parts == sorted(parts)
    sizes = [b - a for a, b in parts]
    assert sizes[:5] == [256 * KIB, 512 * KIB, 768 * KIB, MIB, MIB]
    assert min(sizes[:-1]) == 256 * KIB and sizes[4:] == sorted(sizes[4:], reverse=True)


def test_parts_leave_out_what_is_there_already():
    parts = plan(len(DATA), [(MIB, 2 * MIB), (3 * MIB, 3 * MIB + 1)], connections=4)
    assert gaps(len(DATA), [*parts, (MIB, 2 * MIB), (3 * MIB, 3 * MIB + 1)]) == []
    assert not any((a < 2 * MIB and b > MIB) or a <= 3 * MIB < b for a, b in parts)


def test_the_contiguous_prefix_grows_through_finished_and_half_fetched_parts():
    ledger = Ledger([(0, 10)])
    ledger.written(20, 25)
    ledger.finish(30, 40)
    assert ledger.frontier() == 10
    ledger.finish(10, 20)
    assert ledger.frontier() == 25 and ledger.frontier(20) == 25
    ledger.written(20, 30)
    assert ledger.frontier() == 40 and ledger.received() == 40


def test_md5_is_right_when_later_parts_finish_before_the_first(tmp_path):
    api, partial, rest_first = FakeApi(), tmp_path / "out.partial", []

    def hold_first(start: int, end: int, response: Response) -> Response:
        deadline = time.monotonic() + 10
        while start == 0 and partial.read_bytes()[end:] != DATA[end:] and time.monotonic() < deadline:
            time.sleep(0.01)  # until every other part is in the file
        rest_first.append(start == 0 and partial.read_bytes()[end:] == DATA[end:])
        return response

    api.answer = hold_first
    result = _download(api, tmp_path / "out")
    assert result.md5 == MD5 and (tmp_path / "out").read_bytes() == DATA and any(rest_first)
    assert sorted(api.ranges) == plan(len(DATA), [], 4) and list(tmp_path.iterdir()) == [tmp_path / "out"]


def test_a_crash_leaves_a_journal_and_the_resume_fetches_only_the_missing_parts(tmp_path):
    partial, parts = tmp_path / "out.partial", plan(len(DATA), [], 4)
    have = [parts[0], parts[2], parts[-1]]
    with partial.open("wb") as fh:
        for start, end in have:
            fh.seek(start)
            fh.write(DATA[start:end])
    ranged.write_journal(ranged.journal_of(partial), len(DATA), MD5, have)
    api = FakeApi()
    result = _download(api, tmp_path / "out")
    assert result.md5 == MD5 and result.resumed_from == sum(b - a for a, b in have)
    assert not set(api.ranges) & set(have) and not ranged.journal_of(partial).exists()


def test_a_200_instead_of_206_goes_on_as_one_stream_from_the_prefix(tmp_path):
    api = FakeApi()
    api.answer = lambda start, end, r: r if start == 0 else Response(200, {}, DATA)
    result = _download(api, tmp_path / "out")
    assert result.md5 == MD5 and (tmp_path / "out").read_bytes() == DATA and len(api.streams) == 1
    assert not ranged.journal_of(tmp_path / "out.partial").exists()


def test_a_content_range_other_than_asked_for_is_not_written(tmp_path):
    api = FakeApi()
    wrong = {"Content-Range": f"bytes 0-99/{len(DATA)}", "Content-Length": "100"}
    api.answer = lambda start, end, r: Response(206, wrong, DATA[:100]) if start else r
    assert _download(api, tmp_path / "out").md5 == MD5 and len(api.streams) == 1


def test_no_accept_ranges_on_the_head_means_one_plain_get(tmp_path):
    api = FakeApi()
    api.head = {"Content-Length": str(len(DATA))}
    assert _download(api, tmp_path / "out").md5 == MD5 and (api.ranges, api.streams) == ([], [""])


def test_a_part_longer_than_its_range_is_a_size_lie_and_nothing_is_kept(tmp_path):
    api = FakeApi()
    api.answer = lambda start, end, r: Response(206, {"Content-Range": r.headers["Content-Range"]},
                                                DATA[start : end + 1])
    with pytest.raises(SizeMismatchError, match="more than"):
        _download(api, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_part_that_breaks_off_is_fetched_on_from_where_it_stopped(tmp_path):
    api, broken = FakeApi(), []
    start, end = plan(len(DATA), [], 4)[2]

    def break_once(at: int, _end: int, response: Response) -> Response:
        if at == start and not broken:
            broken.append(at)
            response.raw._fp = io.BytesIO(DATA[at : at + 100 * KIB])
        return response

    api.answer = break_once
    assert _download(api, tmp_path / "out").md5 == MD5
    assert (start + 100 * KIB, end) in api.ranges and api.streams == []


def test_to_prefix_keeps_only_the_bytes_before_the_first_hole(tmp_path):
    partial = tmp_path / "x.partial"
    partial.write_bytes(DATA[: 3 * MIB])
    ranged.write_journal(ranged.journal_of(partial), len(DATA), None, [(0, MIB), (2 * MIB, 3 * MIB)])
    ranged.to_prefix(partial)
    assert partial.read_bytes() == DATA[:MIB] and not ranged.journal_of(partial).exists()
