"""Directory-fd based file operations that never follow a symlink below a root directory."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from burst_agent.staging.safepath import RESERVED_DIRS, UnsafePathError, safe_relpath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class ConfinementError(UnsafePathError):
    """A local path component (planted symlink, file in the way) prevents a confined write."""


def open_root(root: Path) -> int:
    """Open the root directory itself (the one place a symlink is followed: the admin chose it)."""
    return os.open(root, _ROOT_FLAGS)


def _component_reason(dir_fd: int, name: str, exc: OSError) -> str:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return f"{name!r}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{name!r} is a symlink; not followed"
    if not stat.S_ISDIR(st.st_mode):
        return f"{name!r} exists and is not a directory"
    return f"{name!r}: {exc.strerror}"


def open_dir(root_fd: int, rel_dir: PurePosixPath, *, create: bool) -> int:
    """An fd for root/rel_dir reached component by component with O_NOFOLLOW; mkdir missing ones if asked."""
    fd = os.dup(root_fd)
    try:
        for part in rel_dir.parts:
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise ConfinementError(str(rel_dir), _component_reason(fd, part, exc)) from exc
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise ConfinementError(str(rel_dir), _component_reason(fd, part, exc)) from exc
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_regular(dir_fd: int, name: str) -> int:
    """An fd for a file named relative to dir_fd (not followed if a symlink); only a regular file."""
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfinementError(name, "staged download is not a regular file")
    return fd


def require_regular_at(dir_fd: int, name: str) -> None:
    """Refuse anything but a regular file at dir_fd/name (e.g. something swapped in for a staged file)."""
    os.close(_open_regular(dir_fd, name))


def fsync_at(dir_fd: int, name: str) -> None:
    """fsync a regular file named relative to dir_fd, refusing anything else."""
    fd = _open_regular(dir_fd, name)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_destination(dir_fd: int, name: str, display: str) -> None:
    """Refuse a final name that is a symlink or a directory; a regular file there is replaced."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise ConfinementError(display, "the destination is a symlink; left untouched")
    if stat.S_ISDIR(st.st_mode):
        raise ConfinementError(display, "the destination is a directory")


def commit_at(src_dir_fd: int, src_name: str, dst_dir_fd: int, dst_name: str, display: str) -> None:
    """Rename a finished file into place; rename never follows the last component, so this stays confined."""
    check_destination(dst_dir_fd, dst_name, display)
    os.rename(src_name, dst_name, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def _stream_to_temp(dir_fd: int, stream: BinaryIO) -> str:
    name = f".burst-tmp-{secrets.token_hex(8)}"
    fd = os.open(name, _TEMP_FLAGS, 0o666, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            shutil.copyfileobj(stream, out, 1024 * 1024)
            out.flush()
            os.fsync(fd)
    except BaseException:
        os.unlink(name, dir_fd=dir_fd)
        raise
    finally:
        os.close(fd)
    return name


def _commit_stream(parent_fd: int, stream: BinaryIO, rel: PurePosixPath) -> None:
    temp = _stream_to_temp(parent_fd, stream)
    try:
        commit_at(parent_fd, temp, parent_fd, rel.name, str(rel))
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=parent_fd)
        raise


def _commit_file(parent_fd: int, source: Path, rel: PurePosixPath) -> None:
    """Rename a finished file into place, or copy it when it lives on another filesystem."""
    src_fd = os.open(source.parent, _ROOT_FLAGS)
    try:
        fsync_at(src_fd, source.name)
        try:
            commit_at(src_fd, source.name, parent_fd, rel.name, str(rel))
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with os.fdopen(os.open(source.name, _READ_FLAGS, dir_fd=src_fd), "rb") as handle:
                _commit_stream(parent_fd, handle, rel)
            os.unlink(source.name, dir_fd=src_fd)
    finally:
        os.close(src_fd)


def write_output(
    root: Path,
    rel: PurePosixPath,
    source: BinaryIO | Path,
    *,
    sync_dir: bool = True,
    reserved_dirs: frozenset[str] = RESERVED_DIRS,
) -> Path:
    """Put `source` (a stream, or a finished temp file on the same filesystem) at root/rel, confined.

    Intermediate directories are opened or created without following symlinks; the data is fsync'd
    before the rename and the directory after it. Raises ConfinementError / UnsafePathError on refusal.
    """
    rel = safe_relpath(str(rel), reserved_dirs=reserved_dirs)
    root_fd = open_root(root)
    try:
        parent_fd = open_dir(root_fd, rel.parent, create=True)
    finally:
        os.close(root_fd)
    try:
        check_destination(parent_fd, rel.name, str(rel))
        if isinstance(source, Path):
            _commit_file(parent_fd, source, rel)
        else:
            _commit_stream(parent_fd, source, rel)
        if sync_dir:
            os.fsync(parent_fd)
    finally:
        os.close(parent_fd)
    return root / Path(*rel.parts)
