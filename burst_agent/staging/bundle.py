"""Pack small inputs into one tar.gz, hash large ones, and upload them through caller-supplied callables.

Every input is opened once (never following a final symlink) and everything about it (its checks, its
hash, the bytes uploaded) comes from that one open file: a path a user can swap is never reopened.
"""

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
from typing import Any, BinaryIO

from burst_agent import failpoints
from burst_agent.rescale.errors import IntegrityError
from burst_agent.staging.inputs import BUNDLE_NAME, UPLOAD_PREFIX, InputFile, InputPlan

CHUNK = 1024 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC

Upload = Callable[[BinaryIO, str], dict[str, Any]]  # (reader, upload name) -> Rescale file object
CacheGet = Callable[[str], str | None]
CachePut = Callable[[str, str, int], None]
Opener = Callable[[InputFile], tuple[BinaryIO, os.stat_result]]


class InputChangedError(OSError):
    """An input shrank while it was being uploaded: the job cannot have the bytes it was planned with."""


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


def open_member(member: InputFile) -> tuple[BinaryIO, os.stat_result]:
    """The default opener: the member's source path, no final symlink followed."""
    return _open_regular(member.source)


def _digests(handle: BinaryIO) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    while chunk := handle.read(CHUNK):
        sha.update(chunk)
        md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file, read once, streaming."""
    handle, _st = _open_regular(path)
    with handle:
        return _digests(handle)


def hash_file(path: Path) -> str:
    """sha256 hex digest of a file, streaming: the content key of the large-file cache."""
    return file_digests(path)[0]


class SendReader:
    """Hands exactly `size` bytes of an open file to the uploader and hashes what it hands over.

    The digests are of the bytes really sent, whatever the file does meanwhile: bytes appended after
    the open are not sent; a file that shrinks raises InputChangedError (the upload fails).
    """

    def __init__(self, raw: BinaryIO, size: int, what: str) -> None:
        self._raw, self.size, self._what, self._pos = raw, size, what, 0
        self.sha = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)

    @property
    def len(self) -> int:
        """Bytes still to send (requests-toolbelt reads this to know when a part is done)."""
        return self.size - self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        left = self.size - self._pos
        data = self._raw.read(left if size < 0 else min(size, left)) if left else b""
        if left and not data:
            raise InputChangedError(f"{self._what}: shrank while it was being uploaded")
        self._pos += len(data)
        self.sha.update(data)
        self.md5.update(data)
        return data


def send(handle: BinaryIO, size: int, name: str, upload: Upload) -> tuple[str, SendReader]:
    """Upload `size` bytes of an open file from its start; (file id, the reader with the sent digests).

    The server's md5 and size must match what was sent (the API document says a file object carries
    both): a mismatch raises IntegrityError and is never cached or attached to a job.
    """
    handle.seek(0)
    reader = SendReader(handle, size, name)
    meta = upload(reader, name)
    if reader.tell() != size:
        raise InputChangedError(f"{name}: {reader.tell()} of {size} bytes were read for the upload")
    if str(meta.get("md5", "")) != reader.md5.hexdigest() or meta.get("decryptedSize") != size:
        # Not the user's doing: the stage is retried (IntegrityError is not a permanent job error).
        raise IntegrityError(f"{name}: the server stored md5 {meta.get('md5')!r}, size "
                             f"{meta.get('decryptedSize')!r}; we sent {reader.md5.hexdigest()}, {size}")
    return str(meta["id"]), reader


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
    """Upload name of a large file: `.burst-in-<hash of its path>`, whatever the file is called.

    The API document does not say what a server does with an input named like an archive (one seen
    unpacks `data.tar.gz` and removes it), so no user name is ever uploaded as is: the name has no
    extension at all, and the remote command moves the file to its own name (placement_script).
    """
    tag = hashlib.sha256(str(member.rel).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return UPLOAD_PREFIX + tag


def placement_script(plan: InputPlan) -> str:
    """POSIX sh lines, run before the job: unpack the bundle, move each large file to its own path.

    The bundle is unpacked only if it is there as uploaded (a server that unpacked it anyway has
    already put its members in place); a large file that is not there stops the job with a message.
    """
    bundle = shlex.quote(BUNDLE_NAME)
    lines = [
        "# burst-agent: put the inputs in place (uploaded under names no server unpacks)",
        f"if [ -f {bundle} ]; then tar -xzf {bundle} && rm -f -- {bundle} || "
        "{ echo 'burst-agent: cannot unpack the input bundle' >&2; exit 1; }; fi",
    ]
    for member in plan.large_files:
        name, dest = shlex.quote(upload_name(member)), shlex.quote(str(member.rel))
        mkdir = f"mkdir -p -- {shlex.quote(str(member.rel.parent))} && " if len(member.rel.parts) > 1 else ""
        missing = shlex.quote(f"burst-agent: input {member.rel} did not arrive")
        lines.append(f"{mkdir}mv -f -- {name} {dest} || {{ echo {missing} >&2; exit 1; }}")
    return "\n".join(lines)


def cache_key(owner_uid: int, sha256: str, name: str) -> str:
    """Cache key of an uploaded large file: its owner, the hash of the bytes sent, and its upload name.

    Per owner: another user's job never gets a file this user uploaded, whatever its hash claims.
    """
    return f"uid{owner_uid}:sha256:{sha256}:{name}"


def _stage_bundle(plan: InputPlan, upload: Upload, tmpdir: Path, md5s: dict[str, str]) -> str:
    fd, tmp_name = tempfile.mkstemp(prefix="burst-inputs-", suffix=".bundle", dir=tmpdir)
    os.close(fd)
    bundle = Path(tmp_name)
    try:
        members, archive_md5 = write_bundle(plan, bundle)
        handle, st = _open_regular(bundle)
        with handle:
            file_id, _reader = send(handle, st.st_size, BUNDLE_NAME, upload)
    finally:
        with suppress(FileNotFoundError):
            bundle.unlink()
    md5s.update(members)
    md5s[BUNDLE_NAME] = archive_md5
    return file_id


def _stage_large(member: InputFile, owner_uid: int, upload: Upload, cache_get: CacheGet,
                 cache_put: CachePut, opener: Opener) -> tuple[str, str, str]:
    """(file id, upload name, md5) of one large input, hashed and sent from one open file."""
    name = upload_name(member)
    handle, st = opener(member)
    with handle:
        sha, md5 = _digests(handle)
        failpoints.hit("stagein.after_hash")
        file_id = cache_get(cache_key(owner_uid, sha, name))
        if file_id is None:
            file_id, sent = send(handle, st.st_size, name, upload)
            md5 = sent.md5.hexdigest()  # the bytes sent are the truth, even if the file changed
            cache_put(cache_key(owner_uid, sent.sha.hexdigest(), name), file_id, st.st_size)
    return file_id, name, md5


def stage_in(
    plan: InputPlan,
    *,
    upload: Upload,
    cache_get: CacheGet,
    cache_put: CachePut,
    tmpdir: Path,
    owner_uid: int,
    opener: Opener = open_member,
) -> StageInResult:
    """Upload the bundle (every time) and each large file (unless this owner's cache has its content)."""
    file_ids: list[str] = []
    md5s: dict[str, str] = {}
    if plan.bundle_members:
        file_ids.append(_stage_bundle(plan, upload, Path(tmpdir), md5s))
    for member in plan.large_files:
        file_id, name, md5 = _stage_large(member, owner_uid, upload, cache_get, cache_put, opener)
        file_ids.append(file_id)
        md5s[str(member.rel)] = md5
        md5s[name] = md5
    return StageInResult(file_ids=file_ids, input_md5=md5s)
