"""Stage-out against lying file objects: strict records, names that display as something else, bounds."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import pytest

from burst_agent.pipeline.collect import FileFailures, attempts_allowed
from burst_agent.rescale.errors import (
    IntegrityError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    SizeMismatchError,
)
from burst_agent.staging.outputs import OutputItem, Problem, download_all, select_outputs
from burst_agent.staging.safepath import UnsafePathError, display, safe_relpath

GOOD = {"id": "g1", "relativePath": "good.txt", "decryptedSize": 4, "md5": hashlib.md5(b"good").hexdigest()}


def test_each_malformed_record_is_refused_alone_and_the_good_one_kept() -> None:
    bad = [{**GOOD, "id": f"b{n}", "relativePath": f"b{n}", **change} for n, change in enumerate([
        {"decryptedSize": "abc"}, {"decryptedSize": -1}, {"decryptedSize": True}, {"decryptedSize": 1.0},
        {"md5": None}, {"md5": 123}, {"md5": "x" * 65}, {"id": 7}])]
    selection = select_outputs([42, *bad, None, {"id": "z", "relativePath": ["a"]}, GOOD], {})
    assert [item.file_id for item in selection.items] == ["g1"]
    assert [p.path for p in selection.refused] == [
        "<listing item 0>", *(f"b{n}" for n in range(8)), "<listing item 9>", "<listing item 10>"]
    assert "decryptedSize 'abc' is not a size" in selection.refused[1].reason


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200b", "\u200d", "\ufeff", "\u00ad", "\x85",
                                  "\udcff", "\ufffd", "\u2028", "\u2029"])
def test_names_that_display_as_something_else_are_refused(char: str) -> None:
    with pytest.raises(UnsafePathError, match=f"contains U\\+{ord(char):04X}"):
        safe_relpath(f"dir/na{char}me.txt")


def test_display_escapes_hidden_characters_and_backslashes_only() -> None:
    assert display("gpj.\u202eexe\\x") == "gpj.\\u202eexe\\\\x"
    assert display("bad\udcff\ufffd\n") == "bad\\udcff\\ufffd\\n"
    assert display("café résumé/データ.txt") == "café résumé/データ.txt"


def test_an_output_larger_than_the_whole_filesystem_is_refused_alone(tmp_path: Path) -> None:
    def download(item: OutputItem, dest: Path) -> None:
        dest.write_bytes(b"good")

    items = [OutputItem("huge", PurePosixPath("huge.bin"), 1 << 62, "0" * 32),
             OutputItem("g1", PurePosixPath("good.txt"), 4, GOOD["md5"])]
    report = download_all(items, download=download, concurrency=2, root=tmp_path, margin_bytes=0)
    assert report.done == [PurePosixPath("good.txt")]
    assert [p.path for p in report.refused] == ["huge.bin"]
    assert "more than the whole filesystem" in report.refused[0].reason


def test_attempts_per_error_type() -> None:
    assert attempts_allowed(SizeMismatchError) == 1
    assert attempts_allowed(IntegrityError) == attempts_allowed(NotFoundError) == 3
    assert attempts_allowed(ValueError) == attempts_allowed(None) == 3
    assert attempts_allowed(ServerError) is attempts_allowed(RateLimitedError) is None


def test_file_failures_give_up_at_the_limit_and_are_forgotten_with_the_job() -> None:
    failures, md5 = FileFailures(), Problem("a.dat", "md5", IntegrityError)
    assert [failures.failed("j1", md5) for _ in range(3)] == [False, False, True]
    assert failures.lost("j1", "a.dat") == md5 and failures.lost("j2", "a.dat") is None
    assert not any(failures.failed("j1", Problem("b", "503", ServerError)) for _ in range(50))
    failures.forget("j1")
    assert failures.lost("j1", "a.dat") is None and not failures.failed("j1", md5)
