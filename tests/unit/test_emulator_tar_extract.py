"""The emulator unpacks tar inputs on Python 3.11.2 too (no extraction filters) and skips hostile members."""

import io
import tarfile
from pathlib import Path

import pytest

from burst_agent.rescale.emulator.files import extract_archive

REG, DIR = tarfile.REGTYPE, tarfile.DIRTYPE
MEMBERS = [("run.sh", REG, b"#!/bin/sh\n"), ("sub", DIR, b""), ("sub/a.txt", REG, b"a"),
           ("../evil", REG, b"x"), ("/tmp/abs-evil", REG, b"x"), ("sub/../../evil2", REG, b"x"),
           ("link", tarfile.SYMTYPE, b""),
           ("hard", tarfile.LNKTYPE, b""), ("dev", tarfile.CHRTYPE, b"")]


def _archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, data in MEMBERS:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.mode, info.linkname = kind, len(data), 0o4755, "/etc/passwd"
            tf.addfile(info, io.BytesIO(data))
    return path


def _as_on_python_3_11_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(tarfile, "data_filter")
    for method in ("extract", "extractall"):
        original = getattr(tarfile.TarFile, method)

        def without_filter(self, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            if "filter" in kwargs:
                raise TypeError("got an unexpected keyword argument 'filter'")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(tarfile.TarFile, method, without_filter)


@pytest.mark.parametrize("old_tarfile", [True, False])
def test_plain_members_are_unpacked_and_hostile_ones_skipped(tmp_path, monkeypatch, old_tarfile) -> None:
    if old_tarfile:
        _as_on_python_3_11_2(monkeypatch)
    work = tmp_path / "jobs" / "work"
    work.mkdir(parents=True)
    assert extract_archive(_archive(work / "in.tar.gz"), work)
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert found == ["jobs", "jobs/work", "jobs/work/in.tar.gz", "jobs/work/run.sh", "jobs/work/sub",
                     "jobs/work/sub/a.txt"]
    assert (work / "sub" / "a.txt").read_bytes() == b"a"
    assert (work / "run.sh").stat().st_mode & 0o7777 == 0o755  # executable stays, setuid goes
    assert not Path("/tmp/abs-evil").exists()


@pytest.mark.parametrize("name", ["in.tar.gz", "in.gz"])
def test_unpack_mode_removes_the_archive_as_a_server_was_seen_to(tmp_path, name) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = _archive(work / name)
    assert extract_archive(archive, work, remove=True, decompress=True)
    assert not archive.exists()
    unpacked = work / ("run.sh" if name == "in.tar.gz" else "in")
    assert unpacked.is_file() and unpacked.stat().st_size > 0
