"""Pack small inputs into one tar.gz, hash large ones, and upload them through caller-supplied callables."""

from __future__ import annotations

import gzip
import hashlib
import os
import shlex
import stat
import tarfile
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from burst_agent.staging.inputs import BUNDLE_NAME, InputFile, InputPlan
from burst_agent.staging.safepath import NAME_MAX

CHUNK = 1024 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC

Upload = Callable[[Path, str], str]
CacheGet = Callable[[str], str | None]
CachePut = Callable[[str, str, int], None]


@dataclass(frozen=True)
class StageInResult:
    """File ids to attach to the job (bundle first) and relpath -> md5 of everything sent."""

    file_ids: list[str]
    input_md5: dict[str, str]


class _HashingReader:
    """Reads from a file while feeding an md5; tarfile pulls exactly the member size through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.md5 = hashlib.md5(usedforsecurity=False)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.md5.update(data)
        return data


class _HashingWriter:
    """Writes to a file while feeding an md5 of the bytes written."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.md5 = hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def _open_regular(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """Open a regular file for reading without following a final symlink (plain open: works as the user)."""
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file, read once, streaming."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    handle, _st = _open_regular(path)
    with handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def hash_file(path: Path) -> str:
    """sha256 hex digest of a file, streaming: the content key of the large-file cache."""
    return file_digests(path)[0]


def _tarinfo(member: InputFile, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(str(member.rel))
    info.size = st.st_size
    info.mtime = int(st.st_mtime)
    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_bundle(plan: InputPlan, dest_path: Path) -> tuple[dict[str, str], str]:
    """Write the bundle; return (relpath -> md5 of each member, md5 of the archive)."""
    members: dict[str, str] = {}
    with open(dest_path, "wb") as raw:
        out = _HashingWriter(raw)
        # mtime=0 and no file name in the gzip header: same inputs give the same archive bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz, tarfile.open(  # type: ignore[arg-type]
            fileobj=gz, mode="w", format=tarfile.PAX_FORMAT
        ) as tar:
            for member in sorted(plan.bundle_members, key=lambda m: m.rel.parts):
                handle, st = _open_regular(member.source)
                with handle:
                    reader = _HashingReader(handle)
                    tar.addfile(_tarinfo(member, st), reader)  # type: ignore[arg-type]
                members[str(member.rel)] = reader.md5.hexdigest()
        raw.flush()
        os.fsync(raw.fileno())
    return members, out.md5.hexdigest()


def build_bundle(plan: InputPlan, dest_path: Path) -> Path:
    """Write the plan's small files to a deterministic tar.gz at dest_path (relative paths, no links)."""
    write_bundle(plan, dest_path)
    return dest_path


def upload_name(member: InputFile) -> str:
    """Upload name of a large file; a nested one gets a unique top-level name and is moved remotely."""
    if len(member.rel.parts) == 1:
        return member.rel.name
    tag = hashlib.sha256(str(member.rel).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    prefix = f".burst-in-{tag}-"
    return prefix + member.rel.name[: NAME_MAX - len(prefix)]


def placement_script(plan: InputPlan) -> str:
    """POSIX sh lines that move nested large files from their upload name to their relative path."""
    lines = []
    for member in plan.large_files:
        name = upload_name(member)
        if name != str(member.rel):
            parent, dest = shlex.quote(str(member.rel.parent)), shlex.quote(str(member.rel))
            lines.append(f"mkdir -p -- {parent} && mv -f -- {shlex.quote(name)} {dest}")
    return "\n".join(lines)


def cache_key(sha256: str, name: str) -> str:
    """Cache key of an uploaded large file: content hash plus the name Rescale will place it under."""
    return f"sha256:{sha256}:{name}"


def _stage_bundle(plan: InputPlan, upload: Upload, tmpdir: Path, md5s: dict[str, str]) -> str:
    fd, tmp_name = tempfile.mkstemp(prefix="burst-inputs-", suffix=".tar.gz", dir=tmpdir)
    os.close(fd)
    bundle = Path(tmp_name)
    try:
        members, archive_md5 = write_bundle(plan, bundle)
        file_id = upload(bundle, BUNDLE_NAME)
    finally:
        with suppress(FileNotFoundError):
            bundle.unlink()
    md5s.update(members)
    md5s[BUNDLE_NAME] = archive_md5
    return file_id


def stage_in(
    plan: InputPlan,
    *,
    upload: Upload,
    cache_get: CacheGet,
    cache_put: CachePut,
    tmpdir: Path,
) -> StageInResult:
    """Upload the bundle (every time) and each large file (unless the cache knows its content and name)."""
    file_ids: list[str] = []
    md5s: dict[str, str] = {}
    if plan.bundle_members:
        file_ids.append(_stage_bundle(plan, upload, Path(tmpdir), md5s))
    for member in plan.large_files:
        sha, md5 = file_digests(member.source)
        name = upload_name(member)
        key = cache_key(sha, name)
        file_id = cache_get(key)
        if file_id is None:
            file_id = upload(member.source, name)
            cache_put(key, file_id, member.size)
        file_ids.append(file_id)
        md5s[str(member.rel)] = md5
        md5s[name] = md5
    return StageInResult(file_ids=file_ids, input_md5=md5s)
