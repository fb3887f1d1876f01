"""Packed outputs, agent side: the archive scanned whole, hostile members refused, the rest unpacked."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from burst_agent.staging.outputs import RemoteFile
from burst_agent.staging.packed import ArchiveRefused, find_archive, scan_archive, unpack_outputs, without
from burst_agent.staging.safepath import STAGING_DIR_NAME

OUTPUTS = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n"}


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    return name, data, kind, link


def tar_bytes(*members: tuple, **files: bytes) -> bytes:
    """A tar archive (as tarfile writes it) of (name, data, type, linkname) members, then the files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data, kind, link in [*members, *(member(n, d) for n, d in files.items())]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return out.getvalue()


def scan(data: bytes):
    fd = os.memfd_create("archive")
    try:
        os.write(fd, data)
        return scan_archive(fd, len(data))
    finally:
        os.close(fd)


def refusals(data: bytes) -> dict[str, str]:
    return {p.path: p.reason for p in scan(data).refused}


def unpack(root: Path, data: bytes, declared: int | None = None, inputs: dict[str, str] | None = None):
    record = RemoteFile("arch1", ".burst/outputs.tar", len(data) if declared is None else declared,
                        hashlib.md5(data).hexdigest(), {})

    def download(item, dest: Path) -> None:
        dest.write_bytes(data)

    return unpack_outputs(record, download=download, root=root, uploaded_inputs=inputs or {},
                          concurrency=4, margin_bytes=0)


def test_regular_members_are_unpacked_md5_identical_and_the_staging_dir_goes(tmp_path):
    result = unpack(tmp_path, tar_bytes(**{"./a.txt": OUTPUTS["a.txt"], "sub/b.txt": OUTPUTS["sub/b.txt"]}))
    assert result.report.done == [PurePosixPath("a.txt"), PurePosixPath("sub/b.txt")]
    assert {rel: (tmp_path / rel).read_bytes() for rel in OUTPUTS} == OUTPUTS
    assert result.covered == {"a.txt", "sub/b.txt"}
    assert not (tmp_path / STAGING_DIR_NAME).exists()


@pytest.mark.parametrize(("kind", "what"), [
    (tarfile.SYMTYPE, "a symbolic link"), (tarfile.LNKTYPE, "a hard link"),
    (tarfile.CHRTYPE, "a character device"), (tarfile.BLKTYPE, "a block device"),
    (tarfile.FIFOTYPE, "a fifo"), (tarfile.DIRTYPE, "a directory"),
])
def test_members_that_are_not_regular_files_are_refused(kind, what):
    assert refusals(tar_bytes(member("x", kind=kind, link="/etc/passwd"), ok=b"1")) == {
        "x": f"is {what} in the archive; only regular files are taken"}


@pytest.mark.parametrize(("name", "reason"), [
    ("/etc/evil", "absolute path"),
    ("../up.txt", "contains a '..' component"),
    ("a/../../up.txt", "contains a '..' component"),
    ("gpj\u202e.exe", "contains U+202E, a format character (bidi control, zero-width, byte order mark)"),
    ("zero\u200bwidth", "contains U+200B, a format character (bidi control, zero-width, byte order mark)"),
    ("bell\x07", "contains a control character"),
    (".burst-staging/x", "inside the reserved directory '.burst-staging'"),
])
def test_member_names_are_refused_exactly_as_listed_names_are(name, reason):
    from burst_agent.staging.outputs import check_output_name

    listed = check_output_name(name)
    assert refusals(tar_bytes(member(name, b"evil"))) == {listed.path: listed.reason}
    assert listed.reason == reason


def test_an_undecodable_member_name_is_refused_as_a_lone_surrogate():
    assert list(refusals(_ustar(b"caf\xff", b"x")).values()) == [
        "contains U+DCFF, a lone surrogate (undecodable bytes)"]


def _ustar(name: bytes, data: bytes) -> bytes:
    """A ustar archive of one member whose name is raw bytes (tarfile would encode a str)."""
    info = tarfile.TarInfo("n" * len(name))
    info.size = len(data)
    header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    header[:len(name)] = name
    return _rechecksum(header) + data.ljust(512, b"\0") + b"\0" * 1024


def _rechecksum(header: bytearray) -> bytes:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    return bytes(header)


def test_a_name_twice_refuses_both_copies_once():
    scanned = scan(tar_bytes(member("dup", b"first"), member("./dup", b"second"), ok=b"1"))
    assert [(p.path, p.reason) for p in scanned.refused] == [("dup", "appears 2 times in the archive")]
    assert [str(m.rel) for m in scanned.members] == ["ok"]


def test_control_files_in_the_archive_are_skipped_not_written(tmp_path):
    result = unpack(tmp_path, tar_bytes(**{".burst/x": b"1", "a.txt": b"2"}))
    assert result.report.done == [PurePosixPath("a.txt")] and not (tmp_path / ".burst").exists()


def test_a_member_whose_size_runs_past_the_end_refuses_the_archive():
    raw = bytearray(_ustar(b"big", b"x" * 10))
    raw[124:136] = b"%011o\0" % 10**6
    with pytest.raises(ArchiveRefused, match=r"past the archive's end|unexpected end"):
        scan(_rechecksum(raw[:512]) + bytes(raw[512:]))


def test_a_member_whose_size_is_too_small_refuses_the_archive():
    raw = bytearray(tar_bytes(member("a", b"A" * 2000), member("b", b"B")))
    header = bytearray(raw[:512])
    header[124:136] = b"%011o\0" % 10
    with pytest.raises(ArchiveRefused, match="unreadable data"):
        scan(_rechecksum(header) + bytes(raw[512:]))


def test_an_archive_cut_at_a_member_boundary_is_refused():
    whole = tar_bytes(member("a", b"A" * 512), member("b", b"B" * 512))
    with pytest.raises(ArchiveRefused, match="cut short"):
        scan(whole[:1024])  # header and data of "a": tar would stop there without a word


def test_garbage_is_not_an_archive():
    with pytest.raises(ArchiveRefused, match="not a readable tar archive"):
        scan(b"\x1f\x8b not a tar at all" * 100)


def test_an_archive_bigger_than_declared_is_refused_and_not_kept(tmp_path):
    data = tar_bytes(**OUTPUTS)
    with pytest.raises(ArchiveRefused, match=f"is {len(data)} bytes, the listing declares 100"):
        unpack(tmp_path, data, declared=100)
    assert not any((tmp_path / STAGING_DIR_NAME).iterdir()) and not (tmp_path / "a.txt").exists()


def test_a_planted_symlink_at_a_destination_is_left_and_reported(tmp_path):
    (tmp_path / "a.txt").symlink_to("/etc/passwd")
    result = unpack(tmp_path, tar_bytes(**OUTPUTS))
    assert [(p.path, p.reason) for p in result.report.refused] == [
        ("a.txt", "the destination is a symlink; left untouched")]
    assert os.readlink(tmp_path / "a.txt") == "/etc/passwd" and (tmp_path / "sub/b.txt").exists()


def test_a_symlinked_directory_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "sub").symlink_to(elsewhere)
    result = unpack(tmp_path / "root", tar_bytes(**OUTPUTS))
    assert [p.path for p in result.report.refused] == ["sub/b.txt"] and not any(elsewhere.iterdir())


def test_unchanged_inputs_keep_the_local_copy(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"edited locally since\n")
    inputs = {"a.txt": hashlib.md5(OUTPUTS["a.txt"]).hexdigest()}
    result = unpack(tmp_path, tar_bytes(**OUTPUTS), inputs=inputs)
    assert (tmp_path / "a.txt").read_bytes() == b"edited locally since\n"
    assert result.report.unchanged == [PurePosixPath("a.txt")]


def test_find_archive_tells_the_sole_copy_and_without_drops_what_it_held():
    listed = [{"id": "t1", "relativePath": ".burst/outputs-only.tar", "decryptedSize": 1, "md5": "ab"},
              {"relativePath": "./a.txt"}, {"relativePath": "c.txt"}]
    archive = find_archive(listed)
    assert archive is not None and archive.sole and archive.record.file_id == "t1"
    assert without(listed, {"a.txt"}) == [listed[0], listed[2]]
    assert find_archive([{"relativePath": ".burst/outputs.tar", "md5": "ab"}]).problem is not None
