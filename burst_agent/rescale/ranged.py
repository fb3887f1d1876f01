"""Large downloads over several connections: parallel Range GETs into one file, md5 in order.

The API document lets Rescale decide per file (possibly anew each time) whether a GET takes a Range,
and says a HEAD tells. So a HEAD comes first; only `Accept-Ranges: bytes` with a Content-Length equal
to the declared size goes on. The file is cut into parts (`plan`); `connections` threads each GET one
part at a time with `Range: bytes=a-b` and pwrite it at its offset into `<dest>.partial`. A part must
come back 206 with exactly `Content-Range: bytes a-b/size`: anything else ends the ranged download, the
partial is cut back to its contiguous prefix, and the single stream (transfer.py) goes on from there.
The calling thread md5s the contiguous prefix as it grows, through a mapping of the page cache; fetching
runs at most AHEAD bytes past the hashed prefix, which bounds unhashed pages and reordering.
`<dest>.partial.ranges` (JSON, written after the data is synced, by a thread of its own) lists the
finished parts: after a crash only the missing ones are fetched and the prefix is hashed again from
disk. Nothing past a part's end (so none past the declared size) is written: a body longer than its
range is a size lie.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import threading
from collections import deque
from collections.abc import Iterable
from contextvars import copy_context
from pathlib import Path
from typing import Any

from burst_agent.fsync import fsync_dir
from burst_agent.rescale import body
from burst_agent.rescale.errors import RescaleError, TransientError

CONNECTIONS = 8
RANGE_MIN_BYTES = 64 << 20  # smaller files: one stream (a HEAD and parts would cost more than they gain)
ALIGN = 1 << 20
MIN_PART = 8 << 20
# Fetching may run this far past the hashed prefix. A simulation of a 4 GiB file over 8 x 50 MB/s
# links with a 40 ms RTT (one idle RTT per part) gave 379 MB/s with 1 GiB and 64 MiB parts, 367 with
# 512 MiB and 32 MiB parts; parts much above AHEAD / (2 x connections) stall on the window.
AHEAD = 1 << 30
HASH_STEP = 8 << 20  # the hashed prefix (and the window) moves on in steps of this much at most
READ_CHUNK = 1 << 20  # a worker's buffer: socket -> file in pieces this big
WRITE_BEHIND = 32 << 20
JOURNAL_SUFFIX = ".ranges"
JOURNAL_EVERY_S = 1.0  # at most one journal write (after an fdatasync) a second

Range = tuple[int, int]  # [start, end)


class Refused(Exception):
    """The server did not honour a range as asked: go on with one stream."""


# ---- pure core ----------------------------------------------------------------------------------

def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, with overlapping or touching ranges joined."""
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def gaps(size: int, done: Iterable[Range]) -> list[Range]:
    """What of [0, size) `done` does not cover."""
    missing, at = [], 0
    for start, end in merge(done):
        if start > at:
            missing.append((at, start))
        at = max(at, end)
    return missing + ([(at, size)] if at < size else [])


def max_part(connections: int) -> int:
    return max(MIN_PART, AHEAD // (2 * connections) // ALIGN * ALIGN)


def plan(size: int, done: Iterable[Range], connections: int) -> list[Range]:
    """The parts still to fetch, in file order. Each is 1/(2 x connections) of what remains, between
    MIN_PART and max_part: big parts (one idle round trip each) in the bulk, small ones at the end so
    the connections finish together and little is left to hash after the last byte. The first
    `connections` parts ramp up (1/n, 2/n, ... of that size): started together, they then end one
    after the other, and the hashed prefix grows at the speed of all connections, not of one."""
    missing = gaps(size, done)
    remaining = sum(end - start for start, end in missing)
    biggest, parts = max_part(connections), []
    for start, end in missing:
        while start < end:
            share = min(biggest, max(MIN_PART, -(-remaining // (2 * connections) // ALIGN) * ALIGN))
            if len(parts) < connections:
                share = max(MIN_PART, share * (len(parts) + 1) // connections // ALIGN * ALIGN)
            stop = min(end, start + share)
            parts.append((start, stop))
            remaining -= stop - start
            start = stop
    return parts


class Ledger:
    """Which bytes are in the file: finished parts, and how far each part being fetched has come."""

    def __init__(self, done: Iterable[Range] = ()) -> None:
        self.done = merge(done)
        self.fetching: dict[int, int] = {}  # part start -> bytes written up to

    def written(self, start: int, upto: int) -> None:
        self.fetching[start] = upto

    def finish(self, start: int, end: int) -> None:
        self.fetching.pop(start, None)
        self.done = merge([*self.done, (start, end)])

    def frontier(self, at: int = 0) -> int:
        """How far the bytes run on without a hole from `at` (a byte that is in the file, or the end)."""
        while True:
            index = bisect.bisect_right(self.done, (at, float("inf"))) - 1
            if index >= 0 and self.done[index][1] > at:
                at = self.done[index][1]
            upto = self.fetching.get(at, at)
            if upto == at:
                return at
            at = upto

    def received(self) -> int:
        return sum(end - start for start, end in self.done) + sum(
            upto - start for start, upto in self.fetching.items()
        )


def content_range_ok(header: str, start: int, end: int, size: int) -> bool:
    return header.strip() == f"bytes {start}-{end - 1}/{size}"


# ---- the journal --------------------------------------------------------------------------------

def journal_of(partial: Path) -> Path:
    return partial.with_name(partial.name + JOURNAL_SUFFIX)


def read_journal(path: Path) -> dict[str, Any] | None:
    """The journal's contents if it is well formed: {"size", "md5", "done": [[start, end], ...]}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    done = data.get("done") if isinstance(data, dict) else None
    size = data.get("size") if isinstance(data, dict) else None
    if not isinstance(size, int) or not isinstance(done, list):
        return None
    ok = all(isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r)
             and 0 <= r[0] < r[1] <= size for r in done)
    return data if ok else None


def write_journal(path: Path, size: int, md5: str | None, done: list[Range]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        json.dump({"size": size, "md5": md5, "done": [list(r) for r in done]}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def discard(partial: Path) -> None:
    """Forget which parts of the partial are there (it is being deleted or truncated)."""
    journal_of(partial).unlink(missing_ok=True)


def to_prefix(partial: Path) -> None:
    """Turn a ranged partial into what the single stream resumes: its contiguous prefix, no journal."""
    journal = journal_of(partial)
    if not journal.exists():
        return
    data = read_journal(journal)
    keep = Ledger([tuple(r) for r in data["done"]] if data else []).frontier()
    if partial.exists():
        with partial.open("r+b") as fh:
            fh.truncate(min(keep, os.fstat(fh.fileno()).st_size))
            os.fsync(fh.fileno())
    journal.unlink()


def _resumable(partial: Path, size: int, md5: str | None) -> list[Range]:
    """The parts already in the partial: from its journal, or the whole partial if it has none (a
    single stream's prefix). A journal for another file, or one that does not parse, restarts."""
    journal = journal_of(partial)
    if not partial.exists():
        discard(partial)
        return []
    length = partial.stat().st_size
    if not journal.exists():
        return [(0, length)] if length else []
    data = read_journal(journal)
    if data is None or data["size"] != size or data.get("md5") not in (None, md5):
        partial.unlink()
        discard(partial)
        return []
    return [(start, end) for start, end in data["done"] if end <= length]


# ---- HTTP ---------------------------------------------------------------------------------------

def wanted(partial: Path, size: int | None, connections: int, range_min_bytes: int) -> bool:
    """Worth a HEAD: big enough, more than one connection, and not complete already."""
    if size is None or connections < 2 or size < max(1, range_min_bytes):
        return False
    complete = partial.exists() and partial.stat().st_size == size and not journal_of(partial).exists()
    return not complete


def takes_ranges(client: body.Api, file_id: str, size: int) -> bool:
    """HEAD: does a GET of this file take a Range, and is it the size declared?"""
    try:
        response = client.request("HEAD", "/files/{id}/contents/", {"id": file_id},
                                  headers={"Accept": "*/*", "Accept-Encoding": "identity"})
    except RescaleError as exc:
        if exc.transient:
            raise
        return False  # e.g. 405 for HEAD: the GET will say what is wrong, if anything
    with response:
        units = {unit.strip().lower() for unit in response.headers.get("Accept-Ranges", "").split(",")}
        length = response.headers.get("Content-Length", "")
        return (response.status_code == 200 and "bytes" in units and body.identity(response)
                and body.LENGTH.fullmatch(length) is not None and int(length) == size)


class _Fetch:
    """One ranged download in progress: worker threads fetch parts, the calling thread hashes."""

    def __init__(self, client: body.Api, file_id: str, fd: int, size: int, done: list[Range],
                 connections: int, name: str) -> None:
        self.client, self.file_id, self.fd, self.size, self.name = client, file_id, fd, size, name
        self.path = client.path("/files/{id}/contents/", id=file_id)
        lock = threading.Lock()
        self.grown = threading.Condition(lock)  # the hasher waits on it: more bytes in a row, or a stop
        self.hashed_on = threading.Condition(lock)  # workers wait on it: the window moved, or a stop
        self.ledger = Ledger(done)
        self.pending = deque(plan(size, done, connections))
        self.hashed = 0
        self.failure: BaseException | None = None
        self.ended = threading.Event()
        self.journaled = self.ledger.done
        # Each range spends as the caller does (its context's `spending`: ratelimit.py).
        self.workers = [threading.Thread(target=copy_context().run, args=(self._work,),
                                         name=f"download-range-{n}", daemon=True)
                        for n in range(min(connections, len(self.pending)))]

    @property
    def stopped(self) -> bool:
        return self.failure is not None

    def _stop(self, exc: BaseException) -> None:
        with self.grown:
            self.failure = self.failure or exc
            self.grown.notify_all()
            self.hashed_on.notify_all()
        self.ended.set()

    def _work(self) -> None:
        buf = memoryview(bytearray(READ_CHUNK))
        while True:
            with self.hashed_on:
                while not self.stopped and self.pending and self.pending[0][1] - self.hashed > AHEAD:
                    self.hashed_on.wait()
                if self.stopped or not self.pending:
                    return
                start, end = self.pending.popleft()
                self.ledger.written(start, start)
            try:
                self._part(start, end, buf)
            except BaseException as exc:  # handed to the calling thread
                self._stop(exc)
                return

    def _part(self, start: int, end: int, buf: memoryview) -> None:
        """Fetch [start, end), resuming a break-off from where it got, within the retry policy."""
        retry = 0
        while True:
            with self.grown:
                at = self.ledger.fetching[start]
            try:
                self._get(start, at, end, buf)
            except body.BodyBroken as exc:
                if retry >= self.client.retry.max_retries:
                    raise TransientError(f"download broke off ({exc})", method="GET", path=self.path) from exc
                self.client.retry.sleep(self.client.retry.backoff(retry))
                retry += 1
                continue
            if self.stopped:
                return
            with self.grown:
                self.ledger.finish(start, end)
                self.grown.notify()
            return

    def _get(self, part: int, start: int, end: int, buf: memoryview) -> None:
        headers = {"Accept": "*/*", "Accept-Encoding": "identity", "Range": f"bytes={start}-{end - 1}"}
        try:
            response = self.client.request("GET", "/files/{id}/contents/", {"id": self.file_id},
                                           headers=headers, stream=True)
        except RescaleError as exc:
            if exc.status == 416:
                raise Refused(f"range {start}-{end - 1} not satisfiable") from exc
            raise
        with response:
            if response.status_code != 206 or not body.identity(response) or not content_range_ok(
                    response.headers.get("Content-Range", ""), start, end, self.size):
                raise Refused(f"asked for bytes {start}-{end - 1}, got {response.status_code} "
                              f"{response.headers.get('Content-Range', 'without Content-Range')}")
            length = response.headers.get("Content-Length")
            if length is not None and length != str(end - start):
                raise body.SizeLie(f"a range of {end - start} bytes announced as {length}")
            self._pump(response, part, start, end, buf)

    def _pump(self, response: Any, part: int, at: int, end: int, buf: memoryview) -> None:
        read = body.read_into(response)
        while not self.stopped:
            try:
                n = read(buf[: min(len(buf), end - at + 1)])  # one byte more proves an overlong body
            except body.BROKEN as exc:
                raise body.BodyBroken(type(exc).__name__) from exc
            if not n:
                break
            if at + n > end:
                raise body.SizeLie(f"the server sends more than the {end - at} bytes left of its range")
            _pwrite_all(self.fd, buf[:n], at, self.name)
            at += n
            with self.grown:
                self.ledger.written(part, at)
                if self.ledger.frontier(self.hashed) >= at:  # these bytes follow the hashed ones in a row
                    self.grown.notify()
        if at < end and not self.stopped:
            raise body.BodyBroken(f"short body: {at - part} of {end - part} bytes")

    def _journal(self, journal: Path, expected_md5: str | None) -> None:
        """List the finished parts in the journal (after syncing their bytes) if they changed."""
        with self.grown:
            done = self.ledger.done
        if done != self.journaled:
            os.fdatasync(self.fd)
            write_journal(journal, self.size, expected_md5, done)
            self.journaled = done

    def _keep_journal(self, journal: Path, expected_md5: str | None) -> None:
        """A thread of its own: the sync waits for the disk, the hash must not."""
        try:
            while not self.ended.wait(JOURNAL_EVERY_S):
                self._journal(journal, expected_md5)
        except BaseException as exc:
            self._stop(exc)

    def run(self, md5: Any, progress: body.Progress | None, journal: Path, expected_md5: str | None) -> None:
        """Hash the contiguous prefix as it grows, with the journal kept beside, until done or stopped."""
        keeper = threading.Thread(target=self._keep_journal, args=(journal, expected_md5),
                                  name="download-journal", daemon=True)
        for thread in [*self.workers, keeper]:
            thread.start()
        flushed = 0
        try:
            while self.hashed < self.size:
                with self.grown:
                    while not self.stopped and self.ledger.frontier(self.hashed) <= self.hashed:
                        self.grown.wait()
                    if self.stopped:
                        break
                    target = min(self.ledger.frontier(self.hashed), self.hashed + HASH_STEP)
                reached = body.hash_file(self.fd, md5, self.hashed, target)
                with self.grown:
                    self.hashed = reached
                    self.hashed_on.notify_all()
                    received = self.ledger.received()
                if reached - flushed >= WRITE_BEHIND:
                    body.write_behind(self.fd, reached)  # from 0: pages dirty last time are clean now
                    flushed = reached
                if progress is not None:
                    progress(received, self.size)
        finally:
            self._stop(self.failure or _Finished())
            for thread in [*self.workers, keeper]:
                thread.join()
            if self.hashed < self.size:
                self._journal(journal, expected_md5)


class _Finished(Exception):
    """Not an error: tells the workers to stop."""


def _pwrite_all(fd: int, view: memoryview, offset: int, name: str) -> None:
    try:
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    except OSError as exc:
        raise RescaleError(f"cannot write {name}: {exc.strerror or exc}") from exc


def fetch(
    client: body.Api, file_id: str, partial: Path, size: int, *, connections: int = CONNECTIONS,
    progress: body.Progress | None = None, expected_md5: str | None = None,
) -> tuple[int, Any, int] | None:
    """Download `size` bytes into `partial` over parallel ranges: (size, md5, bytes there before), or
    None if the server takes no ranges for this file (the partial then holds a contiguous prefix and
    no journal). A break-off beyond the retry policy raises with the partial and journal kept."""
    if not takes_ranges(client, file_id, size):
        return None
    done = _resumable(partial, size, expected_md5)
    journal = journal_of(partial)
    write_journal(journal, size, expected_md5, merge(done))  # before any hole is made
    fsync_dir(partial.parent)
    md5 = hashlib.md5(usedforsecurity=False)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        run = _Fetch(client, file_id, fd, size, done, connections, partial.name)
        run.run(md5, progress, journal, expected_md5)
        if isinstance(run.failure, Refused):
            os.ftruncate(fd, run.ledger.frontier())
            os.fsync(fd)
            journal.unlink()
            return None
        if not isinstance(run.failure, _Finished):
            raise run.failure  # type: ignore[misc]
        os.fsync(fd)
    finally:
        os.close(fd)
    journal.unlink()
    return size, md5, sum(end - start for start, end in merge(done))
