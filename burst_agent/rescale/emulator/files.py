"""File bytes on disk: streamed uploads with md5, ranged downloads, archive extraction."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

BLOCK_SIZE = 1024 * 1024
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# What the emulator does with an input whose name looks like an archive (the API document says nothing):
# place: nothing, the file lands under its name; extract: unpack zip/tar beside it, keep it (the default);
# unpack: as a server was seen to do, unpack zip/tar and decompress .gz/.bz2/.xz, then remove the file.
ARCHIVE_MODES = ("place", "extract", "unpack")
_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


class HashingFile:
    """A write-then-read file for werkzeug's multipart parser that hashes what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] = open(path, "w+b")  # noqa: SIM115 - closed by close()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self._fh.readline(size)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class UploadRequest(Request):
    """A request whose multipart file parts stream straight to files under `upload_dir`."""

    upload_dir: Path = Path(".")
    max_form_parts = 50

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> Any:
        stream = HashingFile(self.upload_dir / f".partial-{os.urandom(8).hex()}")
        self.environ.setdefault("emulator.uploads", []).append(stream)
        return stream


def safe_name(name: str | None) -> str:
    """The last component of a client-supplied file name, never empty, '.' or '..'."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    return base if base not in ("", ".", "..") else "upload"


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def download_response(request: Request, path: Path, name: str, md5: str) -> Response:
    """Stream a file from disk in 1 MiB blocks, honouring a single RFC 7233 Range."""
    fh = open(path, "rb")  # noqa: SIM115 - the WSGI server closes it via the file wrapper
    size = os.fstat(fh.fileno()).st_size
    response = Response(
        wrap_file(request.environ, fh, BLOCK_SIZE),
        mimetype="application/octet-stream",
        direct_passthrough=True,
    )
    response.content_length = size
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.set_etag(md5)
    try:
        return response.make_conditional(request, accept_ranges=True, complete_length=size)
    except Exception:
        fh.close()
        raise


def _inside(root: Path, member: str) -> bool:
    target = (root / member).resolve()
    return target == root or root in target.parents


def _plain_member(member: tarfile.TarInfo, root: Path) -> bool:
    """A regular file or directory whose name stays inside root: no absolute path, no `..`."""
    name = PurePosixPath(member.name)
    return (
        (member.isreg() or member.isdir())
        and not name.is_absolute()
        and ".." not in name.parts
        and _inside(root, member.name)
    )


def _extract_tar(tf: tarfile.TarFile, dest: Path, root: Path) -> None:
    # Extraction filters came with Python 3.11.4; Debian 12 runs 3.11.2. The member check is the safety
    # on every version; "data", where it exists, adds its own and keeps 3.12+ from warning.
    data_filter = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    for member in tf.getmembers():
        if not _plain_member(member, root):
            continue  # links, devices, escaping names: skipped, as zip members are
        tf.extract(member, dest, set_attrs=False, **data_filter)  # no owner, mode or mtime from the archive
        if member.isreg():
            os.chmod(dest / member.name, member.mode & 0o755 | 0o600)


def extract_archive(archive: Path, dest: Path, *, remove: bool = False, decompress: bool = False) -> bool:
    """Unpack a zip or tar archive into dest as Rescale does; members escaping dest are skipped.

    `decompress` also turns a single compressed file (x.gz, x.bz2, x.xz) into x; `remove` deletes the
    archive afterwards. Both are for ARCHIVE_MODES "unpack".
    """
    lower = archive.name.lower()
    root = dest.resolve()
    suffix = next((s for s in _COMPRESSED if lower.endswith(s)), None)
    if lower.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if _inside(root, member.filename):
                    zf.extract(member, dest)
    elif lower.endswith(TAR_SUFFIXES):
        with tarfile.open(archive, "r:*") as tf:
            _extract_tar(tf, dest, root)
    elif decompress and suffix is not None and len(archive.name) > len(suffix):
        target = dest / archive.name[: -len(suffix)]
        with _COMPRESSED[suffix](archive, "rb") as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, BLOCK_SIZE)
    else:
        return False
    if remove:
        archive.unlink()
    return True
