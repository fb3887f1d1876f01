"""Choose a finished job's output files, download them in parallel and commit them confined under root."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from burst_agent.staging.confined import (
    ConfinementError,
    check_destination,
    commit_at,
    open_dir,
    open_root,
    require_regular_at,
)
from burst_agent.staging.safepath import (
    CONTROL_DIR_NAME,
    RESERVED_DIRS,
    STAGING_DIR_NAME,
    UnsafePathError,
    safe_relpath,
)

MiB = 1024 * 1024
DEFAULT_MARGIN_BYTES = 256 * MiB
DEFAULT_MARGIN_RATIO = 0.05
# Remote-side file ids become local file names in the staging dir, so they are checked too.
_FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_SKIP: frozenset[str] = frozenset({CONTROL_DIR_NAME + "/"})
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class InsufficientSpaceError(OSError):
    """Not enough free space under root for the outputs; retry later (the job stays in staging-out)."""

    def __init__(self, path: Path, needed: int, free: int) -> None:
        super().__init__(f"{path}: need {needed} bytes free (outputs plus margin), only {free} available")
        self.path = path
        self.needed = needed
        self.free = free


@dataclass(frozen=True)
class OutputItem:
    """One remote output file to fetch: its id, safe local relpath, size, md5 and the raw API object."""

    file_id: str
    rel: PurePosixPath
    size: int
    md5: str | None
    remote: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Problem:
    """A path that was skipped, refused or failed, and why."""

    path: str
    reason: str


@dataclass
class OutputSelection:
    """Result of select_outputs: what to fetch, what is deliberately skipped, what is refused."""

    items: list[OutputItem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)


@dataclass
class StageOutReport:
    """Result of download_all; refusals and failures of single files never stop the rest."""

    done: list[PurePosixPath] = field(default_factory=list)
    unchanged: list[PurePosixPath] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)


def _normalise(raw: str) -> str:
    return "/".join(p for p in raw.split("/") if p not in ("", "."))


def _skipped(norm: str, skip: Collection[str]) -> bool:
    return norm in skip or any(s.endswith("/") and norm.startswith(s) for s in skip)


def _select_one(
    remote: Mapping[str, Any],
    uploaded_inputs: Mapping[str, str],
    skip: Collection[str],
    reserved_dirs: Collection[str],
) -> OutputItem | Problem:
    """An OutputItem, or a Problem whose reason starts with 'skip:' (normal) or not (refused)."""
    raw = str(remote.get("relativePath") or "")
    norm = _normalise(raw)
    md5 = str(remote.get("md5") or "").lower() or None
    if _skipped(norm, skip):
        return Problem(raw, "skip: agent control file")
    if md5 and uploaded_inputs.get(norm) == md5:
        return Problem(raw, "skip: unchanged input")
    try:
        rel = safe_relpath(raw, reserved_dirs=reserved_dirs)
    except UnsafePathError as exc:
        return Problem(raw, exc.reason)
    file_id = str(remote.get("id") or "")
    if not _FILE_ID.fullmatch(file_id):
        return Problem(raw, f"unusable remote file id {file_id!r}")
    return OutputItem(file_id, rel, int(remote.get("decryptedSize") or 0), md5, remote)


def select_outputs(
    remote_files: Iterable[Mapping[str, Any]],
    uploaded_inputs: Mapping[str, str],
    *,
    skip: Collection[str] = DEFAULT_SKIP,
    reserved_dirs: Collection[str] = RESERVED_DIRS,
) -> OutputSelection:
    """Pick remote files to download: skip control files and unchanged inputs, refuse unsafe paths.

    `skip` holds exact relpaths and directory prefixes ending in '/'; `uploaded_inputs` maps relpath -> md5.
    """
    selection = OutputSelection()
    seen_paths: set[PurePosixPath] = set()
    seen_ids: set[str] = set()
    for remote in remote_files:
        result = _select_one(remote, uploaded_inputs, skip, reserved_dirs)
        if isinstance(result, Problem):
            target = selection.skipped if result.reason.startswith("skip:") else selection.refused
            target.append(result)
        elif result.rel in seen_paths or result.file_id in seen_ids:
            selection.refused.append(Problem(str(result.rel), "duplicate remote path or file id"))
        else:
            seen_paths.add(result.rel)
            seen_ids.add(result.file_id)
            selection.items.append(result)
    return selection


def check_free_space(
    root: Path,
    needed: int,
    *,
    margin_bytes: int = DEFAULT_MARGIN_BYTES,
    margin_ratio: float = DEFAULT_MARGIN_RATIO,
) -> None:
    """Raise InsufficientSpaceError unless root's filesystem has `needed` bytes plus a margin free."""
    vfs = os.statvfs(root)
    free = vfs.f_bavail * vfs.f_frsize
    wanted = needed + max(margin_bytes, int(needed * margin_ratio))
    if free < wanted:
        raise InsufficientSpaceError(root, wanted, free)


def _md5_at(dir_fd: int, name: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with os.fdopen(os.open(name, _READ_FLAGS, dir_fd=dir_fd), "rb") as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _regular_with(dir_fd: int, name: str, item: OutputItem) -> bool:
    """True if dir_fd/name is a regular file with the item's size and md5 (symlinks never match)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == item.size
        and item.md5 is not None
        and _md5_at(dir_fd, name) == item.md5
    )


def _clear_stale(staging_fd: int, name: str) -> None:
    """Remove anything but a regular file at staging/name, so the downloader never writes through a link."""
    try:
        st = os.lstat(name, dir_fd=staging_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise ConfinementError(name, "a directory is in the way in the staging dir")
    if not stat.S_ISREG(st.st_mode):
        os.unlink(name, dir_fd=staging_fd)


@dataclass(frozen=True)
class _Context:
    root_fd: int
    staging_fd: int
    staging_path: Path
    download: Callable[[OutputItem, Path], None]
    durable: bool


def _stage(ctx: _Context, item: OutputItem) -> None:
    """Download into staging/<file id> unless a verified copy is already there (an earlier run's)."""
    name = item.file_id
    _clear_stale(ctx.staging_fd, name + ".partial")
    _clear_stale(ctx.staging_fd, name)
    if _regular_with(ctx.staging_fd, name, item):
        return
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=ctx.staging_fd)
    ctx.download(item, ctx.staging_path / name)


def _fetch(ctx: _Context, item: OutputItem) -> bool:
    """Download and commit one item; False if an identical file is already in place."""
    parent_fd = open_dir(ctx.root_fd, item.rel.parent, create=True)
    try:
        check_destination(parent_fd, item.rel.name, str(item.rel))
        if _regular_with(parent_fd, item.rel.name, item):
            return False
        _stage(ctx, item)
        try:
            require_regular_at(ctx.staging_fd, item.file_id)
            commit_at(ctx.staging_fd, item.file_id, parent_fd, item.rel.name, str(item.rel))
        except UnsafePathError:
            with suppress(FileNotFoundError):
                os.unlink(item.file_id, dir_fd=ctx.staging_fd)
            raise
        return True
    finally:
        os.close(parent_fd)


def _record(report: StageOutReport, item: OutputItem, run: Callable[[], bool]) -> None:
    try:
        changed = run()
    except UnsafePathError as exc:
        report.refused.append(Problem(str(item.rel), exc.reason))
    except Exception as exc:  # one bad file must not stop the others
        report.failed.append(Problem(str(item.rel), f"{type(exc).__name__}: {exc}"))
    else:
        (report.done if changed else report.unchanged).append(item.rel)


def _sync_dirs(root_fd: int, rels: Iterable[PurePosixPath]) -> None:
    """fsync every directory that gained an entry, once, parents included (the root is '.')."""
    dirs = {parent for rel in rels for parent in rel.parents}
    for rel_dir in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with suppress(OSError, UnsafePathError):
            fd = open_dir(root_fd, rel_dir, create=False)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _open_staging(root_fd: int) -> int:
    with suppress(FileExistsError):
        os.mkdir(STAGING_DIR_NAME, 0o700, dir_fd=root_fd)
    return open_dir(root_fd, PurePosixPath(STAGING_DIR_NAME), create=False)


def _fd_path(fd: int, fallback: Path) -> Path:
    """A path that reaches exactly the directory we opened (Linux /proc), so a swap cannot redirect it."""
    proc = Path(f"/proc/self/fd/{fd}")
    return proc if proc.is_dir() else fallback


def download_all(
    items: Iterable[OutputItem],
    *,
    download: Callable[[OutputItem, Path], None],
    concurrency: int,
    root: Path,
    durable: bool = True,
    margin_bytes: int = DEFAULT_MARGIN_BYTES,
) -> StageOutReport:
    """Fetch items in parallel into root/.burst-staging/<file id>, then rename each into root/<rel>, confined.

    `download(item, dest)` writes dest (resuming from dest + '.partial'), verifies the md5 and leaves dest
    durable: fsynced before its rename into place, as RescaleClient.download_file does (so the commit
    does not fsync it a second time: that was a device cache flush per file). `durable` fsyncs the
    directories the commits change. Raises InsufficientSpaceError before any download; refused and
    failed files are reported, never fatal.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    items = list(items)
    check_free_space(root, sum(item.size for item in items), margin_bytes=margin_bytes)
    report = StageOutReport()
    root_fd = open_root(root)
    try:
        staging_fd = _open_staging(root_fd)
        try:
            staging_path = _fd_path(staging_fd, root / STAGING_DIR_NAME)
            ctx = _Context(root_fd, staging_fd, staging_path, download, durable)
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stageout") as pool:
                for item in items:
                    pool.submit(_record, report, item, lambda item=item: _fetch(ctx, item))
            if durable:
                _sync_dirs(root_fd, report.done)
            for entries in (report.done, report.unchanged, report.refused, report.failed):
                entries.sort(key=str)
        finally:
            os.close(staging_fd)
        with suppress(OSError):
            os.rmdir(STAGING_DIR_NAME, dir_fd=root_fd)
    finally:
        os.close(root_fd)
    return report
