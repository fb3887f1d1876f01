"""Choose a finished job's output files, download them in parallel and commit them confined under root."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from contextvars import copy_context
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from burst_agent.rescale.ratelimit import BudgetExhausted
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
    display,
    safe_relpath,
)

MiB = 1024 * 1024
DEFAULT_MARGIN_BYTES = 256 * MiB
DEFAULT_MARGIN_RATIO = 0.05
# Remote-side file ids become local file names in the staging dir, so they are checked too.
_FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The API document promises every file object an md5; a digest is hex, kept loose enough for test doubles.
_MD5 = re.compile(r"[A-Za-z0-9]{1,64}")
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
    """A path that was skipped, refused or failed, and why; `path` is shown escaped (safepath.display).

    `error` is the type of the exception behind a failure, for a caller deciding whether a retry can
    help (the type only: an exception's traceback would keep the download's buffers alive).
    """

    path: str
    reason: str
    error: type[BaseException] | None = field(default=None, compare=False, repr=False)


class MalformedRecord(ValueError):
    """A file object without the fields the API document promises (id, relativePath, decryptedSize, md5)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class RemoteFile:
    """A file object of a listing whose fields are what the API document says they are."""

    file_id: str
    path: str  # relativePath as listed (not yet checked by safe_relpath)
    size: int
    md5: str
    raw: Mapping[str, Any] = field(compare=False, repr=False)


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


def normalise(raw: str) -> str:
    """A remote name without `./` and empty components: how names are compared (not yet checked)."""
    return "/".join(p for p in raw.split("/") if p not in ("", "."))


def _skipped(norm: str, skip: Collection[str]) -> bool:
    return norm in skip or any(s.endswith("/") and norm.startswith(s) for s in skip)


SKIP_CONTROL = "skip: agent control file"
SKIP_INPUT = "skip: unchanged input"


def check_output_name(path: str, *, skip: Collection[str] = DEFAULT_SKIP,
                      reserved_dirs: Collection[str] = RESERVED_DIRS) -> PurePosixPath | Problem:
    """The local relpath of a remote output name (a listed file's or an archive member's), or a Problem:
    skipped (reason starting 'skip:') or refused by safe_relpath's rules. The one place names are judged.
    """
    if _skipped(normalise(path), skip):
        return Problem(display(path), SKIP_CONTROL)
    try:
        return safe_relpath(path, reserved_dirs=reserved_dirs)
    except UnsafePathError as exc:
        return Problem(display(path), exc.reason)


def _listed(remote: object, index: int) -> tuple[Mapping[str, Any], str]:
    """A listing item as (object, relativePath), or MalformedRecord naming it by its place in the listing."""
    if not isinstance(remote, Mapping):
        raise MalformedRecord(f"<listing item {index}>", "not a file object")
    path = remote.get("relativePath")
    if not isinstance(path, str):
        raise MalformedRecord(f"<listing item {index}>", "relativePath is not a string")
    return remote, path


def check_record(remote: object, index: int) -> RemoteFile:
    """The file object's fields, checked as strictly as the API document states them, or MalformedRecord.

    A size that is not a non-negative integer, a missing md5 or an unusable id is refused here, before
    any download. `index` (the item's place in the listing) names an item that has no usable path.
    """
    record, path = _listed(remote, index)
    size, md5, file_id = record.get("decryptedSize"), record.get("md5"), record.get("id")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise MalformedRecord(display(path), f"decryptedSize {display(repr(size)[:40])} is not a size")
    if not isinstance(md5, str) or not _MD5.fullmatch(md5):
        raise MalformedRecord(display(path), "md5 missing or malformed")
    if not isinstance(file_id, str) or not _FILE_ID.fullmatch(file_id):
        raise MalformedRecord(display(path), f"unusable remote file id {display(repr(file_id)[:80])}")
    return RemoteFile(file_id, path, size, md5.lower(), record)


def _select_one(
    remote: object,
    index: int,
    uploaded_inputs: Mapping[str, str],
    skip: Collection[str],
    reserved_dirs: Collection[str],
) -> OutputItem | Problem:
    """An OutputItem, or a Problem whose reason starts with 'skip:' (normal) or not (refused)."""
    try:
        _, path = _listed(remote, index)
        name = check_output_name(path, skip=skip, reserved_dirs=reserved_dirs)
        if isinstance(name, Problem) and name.reason == SKIP_CONTROL:
            return name
        record = check_record(remote, index)
    except MalformedRecord as exc:
        return Problem(exc.path, exc.reason)
    if uploaded_inputs.get(normalise(path)) == record.md5:
        return Problem(display(path), SKIP_INPUT)
    if isinstance(name, Problem):
        return name
    return OutputItem(record.file_id, name, record.size, record.md5, record.raw)


def select_outputs(
    remote_files: Iterable[object],
    uploaded_inputs: Mapping[str, str],
    *,
    skip: Collection[str] = DEFAULT_SKIP,
    reserved_dirs: Collection[str] = RESERVED_DIRS,
) -> OutputSelection:
    """Pick remote files to download: skip control files and unchanged inputs, refuse unsafe paths and
    malformed records (each on its own: one bad record never hides the others).

    `skip` holds exact relpaths and directory prefixes ending in '/'; `uploaded_inputs` maps relpath -> md5.
    """
    selection = OutputSelection()
    seen_paths: set[PurePosixPath] = set()
    seen_ids: set[str] = set()
    for index, remote in enumerate(remote_files):
        result = _select_one(remote, index, uploaded_inputs, skip, reserved_dirs)
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


def regular_with(dir_fd: int, name: str, size: int, md5: str | None) -> bool:
    """True if dir_fd/name is a regular file with this size and md5 (symlinks never match)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    same = stat.S_ISREG(st.st_mode) and st.st_size == size and md5 is not None
    return same and _md5_at(dir_fd, name) == md5


def clear_stale(staging_fd: int, name: str) -> None:
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
class Staging:
    """An open output root and its private staging dir (fds), and how a file is downloaded there."""

    root_fd: int
    staging_fd: int
    staging_path: Path
    download: Callable[[OutputItem, Path], None]
    durable: bool


def stage(ctx: Staging, item: OutputItem) -> None:
    """Download into staging/<file id> unless a verified copy is already there (an earlier run's)."""
    name = item.file_id
    clear_stale(ctx.staging_fd, name + ".partial")
    clear_stale(ctx.staging_fd, name)
    if regular_with(ctx.staging_fd, name, item.size, item.md5):
        return
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=ctx.staging_fd)
    ctx.download(item, ctx.staging_path / name)


def commit_staged(ctx: Staging, staged: str, rel: PurePosixPath, fill: Callable[[], None], size: int,
                  md5: str | None) -> bool:
    """Put staging/<staged> at root/<rel>, confined; False if an identical file is already there.

    The destination directory is opened (made) and checked first; `fill()` then writes staging/<staged>
    (a download), only if the destination does not already hold the content. A staged file that is not
    needed (the destination holds it already) is removed.
    """
    parent_fd = open_dir(ctx.root_fd, rel.parent, create=True)
    try:
        check_destination(parent_fd, rel.name, str(rel))
        if regular_with(parent_fd, rel.name, size, md5):
            with suppress(FileNotFoundError):
                os.unlink(staged, dir_fd=ctx.staging_fd)
            return False
        fill()
        try:
            require_regular_at(ctx.staging_fd, staged)
            commit_at(ctx.staging_fd, staged, parent_fd, rel.name, str(rel))
        except UnsafePathError:
            with suppress(FileNotFoundError):
                os.unlink(staged, dir_fd=ctx.staging_fd)
            raise
        return True
    finally:
        os.close(parent_fd)


def _fetch(ctx: Staging, item: OutputItem) -> bool:
    """Download and commit one item; False if an identical file is already in place."""
    return commit_staged(ctx, item.file_id, item.rel, lambda: stage(ctx, item), item.size, item.md5)


def record(report: StageOutReport, rel: PurePosixPath, run: Callable[[], bool],
           deferred: list[BudgetExhausted] | None = None) -> None:
    """Run one file's fetch and file its outcome in the report (done, unchanged, refused, failed), or
    in `deferred` if its request may not wait for a spent budget (raised again if there is no list)."""
    try:
        changed = run()
    except BudgetExhausted as exc:
        if deferred is None:
            raise
        deferred.append(exc)
    except UnsafePathError as exc:
        report.refused.append(Problem(str(rel), exc.reason))
    except Exception as exc:  # one bad file must not stop the others
        # The message may carry the server's own words (an error detail): shown escaped, like names.
        report.failed.append(Problem(str(rel), display(f"{type(exc).__name__}: {exc}"), type(exc)))
    else:
        (report.done if changed else report.unchanged).append(rel)


def sync_dirs(root_fd: int, rels: Iterable[PurePosixPath]) -> None:
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


@contextmanager
def staging_area(root: Path, download: Callable[[OutputItem, Path], None], *, durable: bool = True
                 ) -> Iterator[Staging]:
    """Open root and root/.burst-staging (made 0700, never through a symlink); the staging dir is
    removed afterwards if empty (not after an error: it may hold a partial download to resume)."""
    root_fd = open_root(root)
    try:
        staging_fd = _open_staging(root_fd)
        try:
            yield Staging(root_fd, staging_fd, _fd_path(staging_fd, root / STAGING_DIR_NAME), download,
                          durable)
        finally:
            os.close(staging_fd)
        with suppress(OSError):
            os.rmdir(STAGING_DIR_NAME, dir_fd=root_fd)
    finally:
        os.close(root_fd)


def capacity(root: Path) -> int:
    """The size of root's whole filesystem: a file declaring more can never fit, however long we wait."""
    vfs = os.statvfs(root)
    return vfs.f_blocks * vfs.f_frsize


def too_big(rel: str, size: int, whole: int) -> Problem:
    return Problem(rel, f"declares {size} bytes, more than the whole filesystem ({whole})")


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
    directories the commits change. Raises InsufficientSpaceError before any download (an item larger
    than the whole filesystem is refused instead); refused and failed files are reported, never fatal.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    items = list(items)
    report = StageOutReport()
    whole = capacity(root)
    # A size no free space could ever hold is refused alone: waiting for space would wait forever.
    report.refused += [too_big(str(i.rel), i.size, whole) for i in items if i.size > whole]
    items = [item for item in items if item.size <= whole]
    check_free_space(root, sum(item.size for item in items), margin_bytes=margin_bytes)
    with staging_area(root, download, durable=durable) as ctx:
        deferred: list[BudgetExhausted] = []
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stageout") as pool:
            for item in items:  # each fetch spends as the caller does (its context's `spending`)
                pool.submit(copy_context().run, record, report, item.rel,
                            lambda item=item: _fetch(ctx, item), deferred)
        finish(ctx, report)
    if deferred:  # what came is in place; the rest comes when the scope has budget again
        raise deferred[0]
    return report


def finish(ctx: Staging, report: StageOutReport) -> None:
    """fsync the directories that gained files (if durable) and sort the report."""
    if ctx.durable:
        sync_dirs(ctx.root_fd, report.done)
    for entries in (report.done, report.unchanged, report.refused, report.failed):
        entries.sort(key=str)
