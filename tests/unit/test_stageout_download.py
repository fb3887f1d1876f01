"""Stage-out download_all: parallel fetch into the staging dir, confined commit, per-file reporting."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path, PurePosixPath

import pytest

from burst_agent.rescale.ratelimit import BudgetExhausted, current_spending, spending
from burst_agent.staging.outputs import OutputItem, download_all
from burst_agent.staging.safepath import STAGING_DIR_NAME


def _item(file_id: str, rel: str, data: bytes) -> OutputItem:
    return OutputItem(file_id, PurePosixPath(rel), len(data), hashlib.md5(data).hexdigest())


class FakeDownloader:
    """Writes the item's content to dest the way the client does (via dest.partial, then rename)."""

    def __init__(self, contents: dict[str, bytes], fail: frozenset[str] = frozenset()) -> None:
        self.contents, self.fail, self.calls = contents, fail, []

    def __call__(self, item: OutputItem, dest: Path) -> None:
        self.calls.append((item.file_id, dest.name))
        partial = dest.with_name(dest.name + ".partial")
        partial.write_bytes(self.contents[item.file_id][:2])
        if item.file_id in self.fail:
            raise ConnectionError("connection reset")
        partial.write_bytes(self.contents[item.file_id])
        os.replace(partial, dest)


def test_failing_item_is_reported_and_the_rest_committed(tmp_path: Path) -> None:
    data = {"f1": b"one", "f2": b"two", "f3": b"three"}
    items = [_item("f1", "a.txt", b"one"), _item("f2", "sub/b.txt", b"two"), _item("f3", "c", b"three")]
    fake = FakeDownloader(data, frozenset({"f3"}))
    report = download_all(items, download=fake, concurrency=3, root=tmp_path)
    assert report.done == [PurePosixPath("a.txt"), PurePosixPath("sub/b.txt")]
    assert [(p.path, p.reason) for p in report.failed] == [("c", "ConnectionError: connection reset")]
    assert (tmp_path / "sub/b.txt").read_bytes() == b"two" and not (tmp_path / "c").exists()
    assert (tmp_path / STAGING_DIR_NAME / "f3.partial").read_bytes() == b"th"  # kept for a Range resume


def test_resume_uses_the_same_staging_name(tmp_path: Path) -> None:
    data = {"f3": b"three"}
    download_all([_item("f3", "c", data["f3"])], download=FakeDownloader(data, frozenset({"f3"})),
                 concurrency=1, root=tmp_path)
    again = FakeDownloader(data)
    report = download_all([_item("f3", "c", data["f3"])], download=again, concurrency=1, root=tmp_path)
    assert report.done == [PurePosixPath("c")] and again.calls == [("f3", "f3")]
    assert not (tmp_path / STAGING_DIR_NAME).exists()


def test_planted_symlink_dir_refused_without_download(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "out")
    fake = FakeDownloader({"x1": b"data"})
    report = download_all([_item("x1", "out/f", b"data")], download=fake, concurrency=2, root=root)
    assert [(p.path, p.reason) for p in report.refused] == [("out/f", "'out' is a symlink; not followed")]
    assert fake.calls == [] and list(elsewhere.iterdir()) == []


def test_planted_symlink_in_staging_dir_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "root" / STAGING_DIR_NAME).mkdir(parents=True)
    os.symlink(victim, tmp_path / "root" / STAGING_DIR_NAME / "x1.partial")
    report = download_all([_item("x1", "f", b"data")], download=FakeDownloader({"x1": b"data"}),
                          concurrency=1, root=tmp_path / "root")
    assert report.done == [PurePosixPath("f")] and victim.read_bytes() == b"keep"


def test_identical_local_file_is_not_downloaded_again(tmp_path: Path) -> None:
    (tmp_path / "same.txt").write_bytes(b"same")
    fake = FakeDownloader({"s1": b"same"})
    report = download_all([_item("s1", "same.txt", b"same")], download=fake, concurrency=1, root=tmp_path)
    assert report.unchanged == [PurePosixPath("same.txt")] and fake.calls == []


def test_downloads_overlap(tmp_path: Path) -> None:
    barrier = threading.Barrier(4, timeout=10)  # breaks (-> failures) unless 4 calls are in flight at once
    data = {f"id{i}": b"x" * i for i in range(4)}
    inner = FakeDownloader(data)

    def download(item: OutputItem, dest: Path) -> None:
        barrier.wait()
        inner(item, dest)

    items = [_item(fid, f"out/{fid}.dat", content) for fid, content in data.items()]
    report = download_all(items, download=download, concurrency=4, root=tmp_path)
    assert report.failed == [] and len(report.done) == 4


def test_invalid_concurrency_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        download_all([], download=FakeDownloader({}), concurrency=0, root=tmp_path)


def test_a_file_whose_request_may_not_wait_is_deferred_not_failed(tmp_path: Path) -> None:
    data = {"f1": b"one", "f2": b"two"}

    def download(item: OutputItem, dest: Path) -> None:
        if item.file_id == "f2":
            raise BudgetExhausted("file-access", 2.0)
        dest.write_bytes(data[item.file_id])

    items = [_item("f1", "a", b"one"), _item("f2", "b", b"two")]
    with pytest.raises(BudgetExhausted):
        download_all(items, download=download, concurrency=2, root=tmp_path)
    assert (tmp_path / "a").read_bytes() == b"one" and not (tmp_path / "b").exists()
    report = download_all(items, download=FakeDownloader(data), concurrency=2, root=tmp_path)
    assert (report.unchanged, report.done, report.failed) == ([PurePosixPath("a")], [PurePosixPath("b")], [])


def test_each_fetch_spends_as_its_caller_does(tmp_path: Path) -> None:
    seen: list[str] = []

    def download(item: OutputItem, dest: Path) -> None:
        seen.append(current_spending().name)
        dest.write_bytes(b"x")

    with spending("finish"):
        download_all([_item("f1", "a", b"x")], download=download, concurrency=2, root=tmp_path)
    assert seen == ["finish"]
