"""File transfers: streamed multipart upload, and resumable download with md5 computed in the same pass.

Download: bytes go to `<dest>.partial`; an existing partial is hashed first and resumed with a Range
request (206 appends; a server that ignores Range answers 200 and we start over). The calling thread
reads the socket into 256 KiB buffers and writes them (both kernel work); a hasher thread md5s each
buffer as it arrives, on the other core (hashlib releases the GIL). A fixed pool of buffers keeps memory
flat; written pages go to disk and out of the page cache as we go (write-behind). Then size and md5
are checked, the file is fsynced and renamed into place. A body that breaks off is resumed, within the
retry policy. Nothing past the declared size is ever written: a size lie is refused at once (no retry).
A large file whose server takes ranges goes over several connections instead (ranged.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor

from burst_agent.fsync import fsync_dir
from burst_agent.rescale import ranged
from burst_agent.rescale.body import (
    BROKEN,
    CHUNK,
    CONTENT_RANGE,
    LENGTH,
    Api,
    BodyBroken,
    Progress,
    SizeLie,
    hash_file,
    identity,
    read_into,
    write_behind,
)
from burst_agent.rescale.errors import IntegrityError, RescaleError, SizeMismatchError, TransientError
from burst_agent.rescale.ranged import CONNECTIONS, RANGE_MIN_BYTES

__all__ = ["CHUNK", "Api", "DownloadResult", "Progress", "download", "upload"]

POOL = 32  # CHUNK buffers: memory bounded at 8 MiB
# Every 32 MiB written: start writeback and drop clean pages. The final fsync then finds little left,
# and fresh page-cache pages come from recycled memory: 1 GiB took 2.5 s instead of 4.6 s here.
WRITE_BEHIND = 32 << 20
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class DownloadResult:
    """A verified download: where it is, its size and md5, and the offset it resumed from (0: fresh)."""

    path: Path
    size: int
    md5: str
    resumed_from: int


def upload(
    client: Api, source: Path | BinaryIO, *, name: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """POST /files/contents/ with the file streamed as multipart field `file`.

    `source` is a path the agent owns, or an open reader (with `len` and `tell`) that the caller opened
    once and checked: what is sent is read from that reader only, never from a path reopened here.
    """
    if isinstance(source, Path):
        with source.open("rb") as fh:
            return upload(client, fh, name=name or source.name, progress=progress)
    if name is None:
        raise ValueError("an upload from an open file needs a name")
    encoder = MultipartEncoder(fields={"file": (name, source, "application/octet-stream")})
    body: MultipartEncoder | MultipartEncoderMonitor = encoder
    if progress is not None:
        total = encoder.len
        body = MultipartEncoderMonitor(encoder, lambda m: progress(m.bytes_read, total))
    # A body with a `len` makes requests send Content-Length; Rescale rejects chunked uploads.
    return client.call("POST", "/files/contents/", data=body, headers={"Content-Type": body.content_type})


class _Hasher(threading.Thread):
    """Hashes filled buffers in arrival order and hands them back; md5 runs here, off the reader's core."""

    def __init__(self, md5: Any, buffers: int = POOL) -> None:
        super().__init__(name="download-md5", daemon=True)
        self.md5 = md5
        self.filled: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(buffers):
            self.free.put(bytearray(CHUNK))

    def run(self) -> None:
        while (item := self.filled.get()) is not None:
            buf, n = item
            try:
                self.md5.update(memoryview(buf)[:n])
            finally:
                self.free.put(buf)  # never strand the reader, whatever happens


def _write_all(fh: io.FileIO, view: memoryview, name: str) -> None:
    try:
        while view:
            view = view[fh.write(view) or 0 :]
    except OSError as exc:
        raise RescaleError(f"cannot write {name}: {exc.strerror or exc}") from exc


def _pump(response: requests.Response, fh: io.FileIO, name: str, hasher: _Hasher, done: int,
          total: int | None, progress: Progress | None) -> int:
    """Socket -> file (this thread) and -> md5 (the hasher); returns the byte count reached.

    `total` is the declared size: reads stop there, and one byte more, asked for but never written,
    proves the server sends more than it declared. Raises SizeLie then, BodyBroken on a transport
    error or a short body, RescaleError if the file cannot be written."""
    readinto = read_into(response)
    fd = fh.fileno()
    flushed = done
    while True:
        buf = hasher.free.get()
        want = CHUNK if total is None else min(CHUNK, total - done + 1)
        try:
            n = readinto(memoryview(buf)[:want])
        except BROKEN as exc:
            hasher.free.put(buf)
            raise BodyBroken(type(exc).__name__) from exc
        if not n:
            hasher.free.put(buf)
            break
        if total is not None and done + n > total:
            hasher.free.put(buf)
            raise SizeLie(f"the server sends more than the {total} bytes declared")
        try:
            _write_all(fh, memoryview(buf)[:n], name)
        finally:
            hasher.filled.put((buf, n))  # hashed even if the write failed: the buffer comes back
        done += n
        if done - flushed >= WRITE_BEHIND:
            write_behind(fd, done)
            flushed = done
        if progress is not None:
            progress(done, total)
    if total is not None and done < total:
        raise BodyBroken(f"short body: {done} of {total} bytes")
    return done


def _hash_existing(partial: Path, md5: Any) -> int:
    with partial.open("rb") as fh:
        return hash_file(fh.fileno(), md5, 0, os.fstat(fh.fileno()).st_size)


def _announced(response: requests.Response, offset: int, match: re.Match[str] | None) -> list[int]:
    """The whole file's size as the server's own headers give it: offset + Content-Length (of an
    unencoded body), and the complete length of a Content-Range."""
    length = response.headers.get("Content-Length", "")
    sizes = [offset + int(length)] if identity(response) and LENGTH.fullmatch(length) else []
    if match and LENGTH.fullmatch(match.group(3)):
        sizes.append(int(match.group(3)))
    return sizes


def _attempt(
    client: Api, file_id: str, partial: Path, progress: Progress | None,
    expected_size: int | None = None,
) -> tuple[int, Any, int]:
    """One GET, resuming the partial if there is one; returns (size, md5, resumed_from).

    With `expected_size`, headers announcing another size are refused before the body is read, and the
    body is read no further than that size (see _pump): a hostile server cannot fill the disk."""
    md5 = hashlib.md5(usedforsecurity=False)
    offset = _hash_existing(partial, md5) if partial.exists() else 0
    headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = client.request("GET", "/files/{id}/contents/", {"id": file_id}, headers=headers, stream=True)
    with response:
        match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if response.status_code != 206 or not match or int(match.group(1)) != offset:
            offset, md5, match = 0, hashlib.md5(usedforsecurity=False), None  # full body: start over
        announced = _announced(response, offset, match)
        lie = next((n for n in announced if expected_size is not None and n != expected_size), None)
        if lie is not None:
            raise SizeLie(f"the server announces {lie} bytes, the file object declares {expected_size}")
        total = expected_size if expected_size is not None else next(iter(announced), None)
        with partial.open("r+b" if partial.exists() else "wb", buffering=0) as fh:
            fh.seek(offset)
            fh.truncate()
            # A small file needs few buffers: allocating the whole pool cost 6 ms per 8 KiB output.
            buffers = POOL if total is None else max(2, min(POOL, (total - offset) // CHUNK + 2))
            hasher = _Hasher(md5, buffers)
            hasher.start()
            try:
                done = _pump(response, fh, partial.name, hasher, offset, total, progress)
            finally:
                hasher.filled.put(None)
                hasher.join()  # md5 now covers every byte written, also on a break-off
                os.fsync(fh.fileno())
    return done, md5, offset


def _stream(
    client: Api, file_id: str, partial: Path, expected_size: int | None, progress: Progress | None,
    path: str,
) -> tuple[int, Any, int]:
    """One stream into the partial, resumed after break-offs within the retry policy."""
    retry = 0
    while True:
        try:
            if expected_size is not None and partial.exists() and partial.stat().st_size == expected_size:
                md5 = hashlib.md5(usedforsecurity=False)  # complete already (crash before the rename)
                size = _hash_existing(partial, md5)
                return size, md5, size
            return _attempt(client, file_id, partial, progress, expected_size)
        except RescaleError as exc:
            if exc.status != 416 or not partial.exists():
                raise
            partial.unlink()  # the partial is no prefix the server can resume: start over
        except BodyBroken as exc:  # keep the partial, resume it
            if retry >= client.retry.max_retries:
                raise TransientError(f"download broke off ({exc})", method="GET", path=path) from exc
            client.retry.sleep(client.retry.backoff(retry))
            retry += 1


def download(
    client: Api, file_id: str, dest: Path, *, expected_md5: str | None = None,
    expected_size: int | None = None, progress: Progress | None = None,
    connections: int = CONNECTIONS, range_min_bytes: int = RANGE_MIN_BYTES,
) -> DownloadResult:
    """Download into `dest` via `dest.partial` (resumed if present), verify, fsync, rename into place.

    With `expected_size` (the file object's decryptedSize) no byte past it is written; a server whose
    headers or body prove another size gets SizeMismatchError at once, the partial deleted, no retry.
    A file of at least `range_min_bytes` goes over `connections` ranged GETs if a HEAD says the server
    takes ranges for it (ranged.py); otherwise, or when a range is refused, over one stream.
    """
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    if expected_size is not None and partial.exists() and partial.stat().st_size > expected_size:
        ranged.discard(partial)
        partial.unlink()  # longer than the file can be: not a prefix of it
    path = client.path("/files/{id}/contents/", id=file_id)
    try:
        got = None
        if ranged.wanted(partial, expected_size, connections, range_min_bytes):
            got = ranged.fetch(client, file_id, partial, expected_size or 0, connections=connections,
                               progress=progress, expected_md5=expected_md5)
        if got is None:
            ranged.to_prefix(partial)  # a ranged partial the stream cannot use: keep its prefix
            got = _stream(client, file_id, partial, expected_size, progress, path)
    except SizeLie as exc:
        ranged.discard(partial)
        partial.unlink(missing_ok=True)
        raise SizeMismatchError(f"download refused: {exc}", method="GET", path=path) from exc
    size, md5, resumed_from = got
    digest = md5.hexdigest()
    problems = []
    if expected_size is not None and size != expected_size:
        problems.append(f"size {size} != expected {expected_size}")
    if expected_md5 is not None and digest != expected_md5.lower():
        problems.append(f"md5 {digest} != expected {expected_md5.lower()}")
    if problems:
        partial.unlink(missing_ok=True)
        raise IntegrityError("downloaded file is corrupt: " + ", ".join(problems), method="GET", path=path)
    os.replace(partial, dest)
    fsync_dir(dest.parent)
    return DownloadResult(dest, size, digest, resumed_from)
