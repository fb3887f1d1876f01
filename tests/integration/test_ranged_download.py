"""Ranged downloads against the emulator over HTTP: parallel parts, ranges refused, a resume after a
crash, and a server that sends more than a range holds."""

from __future__ import annotations

import hashlib
import os

import pytest

from burst_agent.config import RateLimits
from burst_agent.rescale import ranged
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.errors import SizeMismatchError
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.rescale.retry import RetryPolicy
from burst_agent.secret import Token

MIB = 1 << 20
SIZE = 12 * MIB + 12345
CONTENTS = "GET /api/v2/files/<file_id>/contents/"


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranged, "MIN_PART", MIB)
    monkeypatch.setattr(ranged, "AHEAD", 16 * MIB)  # parts of at most 16 MiB / (2 x 4) = 2 MiB


@pytest.fixture
def client(emulator):
    retry = RetryPolicy(max_retries=2, sleep=lambda s: None)
    with RescaleClient(emulator.url, Token(emulator.token), retry=retry,
                       budgets=RateBudgets(RateLimits(enabled=False))) as c:
        yield c


@pytest.fixture
def dl(tmp_path):
    (tmp_path / "dl").mkdir()
    return tmp_path / "dl"  # beside the emulator's own directory


@pytest.fixture
def remote(upload) -> tuple[dict, bytes]:
    data = os.urandom(SIZE)
    meta = upload("big.bin", data)
    assert meta["md5"] == hashlib.md5(data).hexdigest()
    return meta, data


def _get(client, meta, dest, **kw):
    return client.download_file(meta["id"], dest, expected_md5=meta["md5"], expected_size=SIZE,
                                range_connections=4, range_min_bytes=MIB, **kw)


def _requests(emulator) -> tuple[int, int]:
    counts = emulator.stats()["requests"]
    return counts.get("HEAD /api/v2/files/<file_id>/contents/", 0), counts.get(CONTENTS, 0)


def test_a_large_file_comes_in_parallel_parts_with_the_right_md5(emulator, client, remote, dl):
    meta, data = remote
    result = _get(client, meta, dl / "out")
    assert result.md5 == meta["md5"] and (dl / "out").read_bytes() == data
    assert _requests(emulator) == (1, len(ranged.plan(SIZE, [], 4)))
    assert [p.name for p in dl.iterdir()] == ["out"]


@pytest.mark.parametrize("mode", ["ignore", "none"])
def test_ranges_refused_mean_one_stream(emulator, client, remote, dl, mode):
    meta, data = remote
    emulator.set_faults(ranges=mode)
    result = _get(client, meta, dl / "out")
    assert result.md5 == meta["md5"] and (dl / "out").read_bytes() == data
    heads, gets = _requests(emulator)
    # "ignore": each connection's first part is answered 200 (and dropped), then one stream
    assert heads == 1 and (gets == 1 if mode == "none" else 2 <= gets <= 4 + 1)


def test_a_crash_midway_leaves_a_journal_and_the_resume_fetches_only_the_rest(emulator, client, remote,
                                                                               dl):
    meta, data = remote

    def crash(done: int, total: int | None) -> None:
        if done > SIZE // 2:
            raise KeyboardInterrupt("the agent dies")

    with pytest.raises(KeyboardInterrupt):
        _get(client, meta, dl / "out", progress=crash)
    journal = ranged.read_journal(dl / "out.partial.ranges")
    assert journal is not None and journal["done"] and journal["size"] == SIZE
    _, before = _requests(emulator)
    result = _get(client, meta, dl / "out")
    assert result.md5 == meta["md5"] and (dl / "out").read_bytes() == data
    assert result.resumed_from == sum(end - start for start, end in journal["done"])
    assert _requests(emulator)[1] - before == len(ranged.plan(SIZE, [tuple(r) for r in journal["done"]], 4))
    assert sorted(p.name for p in dl.iterdir()) == ["out"]


def test_a_part_longer_than_its_range_is_refused_and_nothing_kept(emulator, client, remote, dl):
    meta, _ = remote
    emulator.set_faults(fault_overrun=1.0)
    with pytest.raises(SizeMismatchError, match="more than"):
        _get(client, meta, dl / "out")
    assert list(dl.iterdir()) == []
    assert emulator.stats()["faultsInjected"]["fault_overrun"] >= 1
