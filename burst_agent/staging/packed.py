"""Packed outputs: the remote command's archive, fetched once, checked whole, then unpacked confined."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from burst_agent.command_wrapper import OUTPUTS_ARCHIVES
from burst_agent.staging.outputs import (
    DEFAULT_SKIP,
    MalformedRecord,
    OutputItem,
    Problem,
    RemoteFile,
    StageOutReport,
    Staging,
    capacity,
    check_free_space,
    check_output_name,
    check_record,
    clear_stale,
    commit_staged,
    finish,
    normalise,
    record,
    stage,
    staging_area,
    too_big,
)
from burst_agent.staging.safepath import RESERVED_DIRS, display

MiB = 1024 * 1024
BLOCK = 512
END_MARKER = 2 * BLOCK  # two zero blocks close a tar archive; without them it was cut short
MAX_MEMBERS = 1_000_000  # more is no archive of ours; refusing it bounds the memory a scan takes
BATCH = 1024  # members handed to the pool at a time (a million queued tasks would hold a lot)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_MEMBER_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_REGULAR = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE})
# Tar entry type -> what it is, for its refusal: an archive member is an output only if it is a file.
_KINDS: dict[bytes, str] = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
    tarfile.DIRTYPE: "a directory",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
# The archive's listed name -> whether it is the only copy of what it holds (keep_outputs "archive").
_SOLE: dict[str, bool] = {name: mode == "archive" for mode, name in OUTPUTS_ARCHIVES.items()}


class ArchiveRefused(Exception):
    """The archive as a whole cannot be trusted (not a whole tar, a size that lies): nothing is unpacked."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Archive:
    """The listed archive: its name, whether the loose copies are gone, its checked file object (None
    with `problem` when malformed)."""

    path: str
    sole: bool
    record: RemoteFile | None
    problem: str | None = None


@dataclass(frozen=True)
class Member:
    """A member that passed the checks: where its data is in the archive and where it goes."""

    index: int
    rel: PurePosixPath
    size: int
    offset: int


@dataclass
class Scan:
    """Every header judged: members to unpack, skipped and refused ones, and every member's name."""

    members: list[Member] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)
    names: frozenset[str] = frozenset()  # normalised: what the archive holds, whatever became of it


@dataclass
class Unpacked:
    """What unpacking did, and the names the archive held (their loose copies are not fetched)."""

    report: StageOutReport
    covered: frozenset[str]


@dataclass(frozen=True)
class _Header:
    name: str
    type: bytes
    size: int
    offset: int
    sparse: bool


def find_archive(files: Iterable[object]) -> Archive | None:
    """The packed outputs among a job's listed files, or None when the command made none."""
    for index, remote in enumerate(files):
        path = remote.get("relativePath") if isinstance(remote, Mapping) else None
        if not isinstance(path, str) or normalise(path) not in _SOLE:
            continue
        sole = _SOLE[normalise(path)]
        try:
            return Archive(path, sole, check_record(remote, index))
        except MalformedRecord as exc:
            return Archive(path, sole, None, exc.reason)
    return None


def without(files: Iterable[Any], covered: Collection[str]) -> list[Any]:
    """The listing less the files whose name the archive held: the archive's verdict on them stands."""
    def held(remote: Any) -> bool:
        path = remote.get("relativePath") if isinstance(remote, Mapping) else None
        return isinstance(path, str) and normalise(path) in covered

    return [remote for remote in files if not held(remote)]


def _headers(tf: tarfile.TarFile, size: int) -> Iterator[_Header]:
    count = 0
    while (info := tf.next()) is not None:
        tf.members.clear()  # our own light copy is kept instead
        count += 1
        if count > MAX_MEMBERS:
            raise ArchiveRefused(f"more than {MAX_MEMBERS} members")
        if info.size < 0 or info.offset_data + info.size > size:
            raise ArchiveRefused(f"member {display(info.name)!r} declares {info.size} bytes, past the "
                                 f"archive's end (its size lies)")
        yield _Header(info.name, info.type, info.size, info.offset_data, bool(info.sparse))


def _read_headers(fd: int, size: int) -> tuple[list[_Header], int]:
    """Every member header and where the last member ends; ArchiveRefused if tar cannot read it."""
    with os.fdopen(os.dup(fd), "rb") as handle:
        handle.seek(0)  # a dup shares the offset; tar's own offsets count from where it starts
        try:
            with tarfile.open(fileobj=handle, mode="r:", encoding="utf-8", errors="surrogateescape") as tf:
                return list(_headers(tf, size)), tf.offset
        except tarfile.TarError as exc:
            raise ArchiveRefused(f"not a readable tar archive ({display(str(exc))})") from exc


def _check_end(fd: int, end: int, size: int) -> None:
    """After the last member only zeros, at least the end marker: else it was cut short or a member's
    size lied (tar stops quietly at a header it cannot read, so this is the only place that shows)."""
    if size - end < END_MARKER:
        raise ArchiveRefused("cut short: no end-of-archive marker after the last member")
    offset = end
    while offset < size:
        chunk = os.pread(fd, min(MiB, size - offset), offset)
        if not chunk:
            raise ArchiveRefused("shorter than its own size")
        if chunk.strip(b"\0"):
            raise ArchiveRefused(f"unreadable data at byte {offset} (a member whose size lies?)")
        offset += len(chunk)


def _kind_reason(header: _Header) -> str | None:
    if header.type in _REGULAR and not header.sparse:
        return None
    kind = _KINDS.get(header.type, f"a tar entry of type {header.type!r}")
    kind = "a sparse file" if header.sparse else kind
    return f"is {kind} in the archive; only regular files are taken"


def _judge(headers: list[_Header], skip: Collection[str], reserved_dirs: Collection[str]) -> Scan:
    names = [normalise(h.name) for h in headers]
    counts = Counter(names)
    scan, reported = Scan(names=frozenset(names)), set()
    for index, (header, norm) in enumerate(zip(headers, names, strict=True)):
        rel = check_output_name(header.name, skip=skip, reserved_dirs=reserved_dirs)
        if isinstance(rel, Problem):
            (scan.skipped if rel.reason.startswith("skip:") else scan.refused).append(rel)
            continue
        # A name twice: tar would let the later one win, a listing the first; neither is sure, both go.
        repeated = f"appears {counts[norm]} times in the archive" if counts[norm] > 1 else None
        reason = _kind_reason(header) or repeated
        if reason is None:
            scan.members.append(Member(index, rel, header.size, header.offset))
        elif norm not in reported:
            reported.add(norm)
            scan.refused.append(Problem(str(rel), reason))
    return scan


def scan_archive(fd: int, size: int, *, skip: Collection[str] = DEFAULT_SKIP,
                 reserved_dirs: Collection[str] = RESERVED_DIRS) -> Scan:
    """Read and judge every header of the tar archive in fd (`size` bytes) before anything is written.

    The whole archive is refused (ArchiveRefused) if tar cannot read it, a member's size runs past its
    end, or it does not end with zeros. A member is judged as a listed file is (check_output_name:
    skipped, or refused by the same name rules), then refused unless it is a regular file whose name
    appears once.
    """
    headers, end = _read_headers(fd, size)
    _check_end(fd, end, size)
    return _judge(headers, skip, reserved_dirs)


def _write_member(ctx: Staging, archive_fd: int, member: Member, staged: str) -> str:
    """Copy the member's bytes to staging/<staged> (O_EXCL|O_NOFOLLOW, fsynced if durable); its md5."""
    clear_stale(ctx.staging_fd, staged)
    with suppress(FileNotFoundError):
        os.unlink(staged, dir_fd=ctx.staging_fd)
    digest = hashlib.md5(usedforsecurity=False)
    fd = os.open(staged, _MEMBER_FLAGS, 0o666, dir_fd=ctx.staging_fd)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            offset, left = member.offset, member.size
            while left:
                chunk = os.pread(archive_fd, min(MiB, left), offset)
                if not chunk:
                    raise OSError(f"the archive ends inside member {member.rel}")
                digest.update(chunk)
                out.write(chunk)
                offset, left = offset + len(chunk), left - len(chunk)
        if ctx.durable:
            os.fsync(fd)
    except BaseException:
        os.unlink(staged, dir_fd=ctx.staging_fd)
        raise
    finally:
        os.close(fd)
    return digest.hexdigest()


def _unpack_member(ctx: Staging, archive_fd: int, member: Member, staged: str,
                   uploaded_inputs: Mapping[str, str]) -> bool:
    """Unpack one member into place; False if nothing changed (an unchanged input, an identical file)."""
    md5 = _write_member(ctx, archive_fd, member, staged)
    if uploaded_inputs.get(str(member.rel)) == md5:  # as for a listed file: the local copy stays
        os.unlink(staged, dir_fd=ctx.staging_fd)
        return False
    return commit_staged(ctx, staged, member.rel, lambda: None, member.size, md5)


def _open_staged(ctx: Staging, archive: OutputItem) -> int:
    fd = os.open(archive.file_id, _READ_FLAGS, dir_fd=ctx.staging_fd)
    st = os.fstat(fd)
    reason = ("the download is not a regular file" if not stat.S_ISREG(st.st_mode) else
              f"the download is {st.st_size} bytes, the listing declares {archive.size}"
              if st.st_size != archive.size else None)
    if reason:
        os.close(fd)
        raise ArchiveRefused(reason)
    return fd


def _extract(ctx: Staging, archive: OutputItem, scan: Scan, uploaded_inputs: Mapping[str, str],
             concurrency: int) -> StageOutReport:
    report = StageOutReport(refused=list(scan.refused))
    fd = _open_staged(ctx, archive)
    try:
        def task(member: Member) -> Callable[[], bool]:
            staged = f"{archive.file_id}.{member.index}"  # file ids have no dot: no clash with downloads
            return lambda: _unpack_member(ctx, fd, member, staged, uploaded_inputs)

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="unpack") as pool:
            for start in range(0, len(scan.members), BATCH):
                batch = scan.members[start:start + BATCH]
                list(pool.map(lambda m: record(report, m.rel, task(m)), batch))
    finally:
        os.close(fd)
    finish(ctx, report)
    return report


def unpack_outputs(
    archive: RemoteFile,
    *,
    download: Callable[[OutputItem, Path], None],
    root: Path,
    uploaded_inputs: Mapping[str, str],
    concurrency: int,
    skip: Collection[str] = DEFAULT_SKIP,
    margin_bytes: int,
    durable: bool = True,
) -> Unpacked:
    """Download the archive into root/.burst-staging, scan it whole, unpack its members into root.

    Raises ArchiveRefused when the archive cannot be used at all (the caller falls back to the loose
    files), InsufficientSpaceError before downloading (twice the archive: it and what it holds) or
    before unpacking, and whatever `download` raises. A member's refusal or failure is reported, never
    fatal; unchanged inputs (SKIP_INPUT) and files already in place are left as they are.
    """
    item = OutputItem(archive.file_id, PurePosixPath(normalise(archive.path)), archive.size, archive.md5,
                      archive.raw)
    whole = capacity(root)
    if archive.size > whole:
        raise ArchiveRefused(too_big(archive.path, archive.size, whole).reason)
    check_free_space(root, 2 * archive.size, margin_bytes=margin_bytes)
    with staging_area(root, download, durable=durable) as ctx:
        stage(ctx, item)
        try:
            fd = _open_staged(ctx, item)
            try:
                scan = scan_archive(fd, archive.size, skip=skip)
            finally:
                os.close(fd)
        except ArchiveRefused:
            os.unlink(item.file_id, dir_fd=ctx.staging_fd)  # useless, and not to be reused
            raise
        check_free_space(root, sum(m.size for m in scan.members), margin_bytes=margin_bytes)
        report = _extract(ctx, item, scan, uploaded_inputs, concurrency)
        os.unlink(item.file_id, dir_fd=ctx.staging_fd)
    return Unpacked(report, scan.names)
