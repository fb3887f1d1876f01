"""The on-disk spool (docs/spool.md): entry format, producer helper, atomic claim, quarantine, watcher."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from burst_agent.fsync import fsync_dir
from burst_agent.inotify import IN_CLOSE_WRITE, IN_CREATE, IN_MOVED_TO, Inotify, InotifyUnavailable
from burst_agent.rejection import EntryRejected

SCRIPT_MAX_BYTES = 1024 * 1024
REQUEST_MAX_BYTES = 256 * 1024
SCRIPT = "script"
REQUEST = "request.json"
# Entry names travel into the reconcile key, the Rescale job name and a tag: keep them plain.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".swp", "~")
# Directory modes (see docs/spool.md): users may drop into incoming/ and tmp/ but not list them.
# incoming/ and tmp/ are setgid: an entry directory a user makes there belongs to the agent's group,
# so the agent (group rwx on it, see submit_entry) may rename it into claimed/ and later empty it.
# failed/<name>.unmovable.reason: an entry refused where it lies (the agent could not move it).
UNMOVABLE = ".unmovable"
DIR_MODES: dict[str, int] = {
    "incoming": 0o3733,
    "tmp": 0o3733,
    "claimed": 0o700,
    "failed": 0o700,
    "results": 0o711,
    "logs": 0o700,
}
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class AlreadyClaimed(Exception):
    """Another agent (or an earlier pass) claimed this entry first."""


@dataclass(frozen=True)
class SpoolEntry:
    """A claimed, validated entry.  The owner comes from st_uid, never from anything the user wrote."""

    name: str
    path: Path
    kind: Literal["dir", "file"]
    owner_uid: int
    owner_name: str | None
    script: str
    request: dict[str, Any] | None  # request.json as written by the producer (schema: docs/translation.md)
    mtime: float
    results_dir: Path | None  # plain-file entries: <spool>/results/<name>/; directory entries: None


def is_ignored(name: str) -> bool:
    """Dotfiles and producers' partially written names are never entries."""
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


# -- rename without replacing --------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _load_renameat2() -> Callable[..., int] | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return func


_renameat2 = _load_renameat2()


def rename_noreplace(src: Path, dst: Path) -> None:
    """rename(2) that fails with FileExistsError instead of replacing `dst` (renameat2 NOREPLACE)."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    # Filesystem without RENAME_NOREPLACE: check, then rename (racy only against a same-name producer).
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def _fsync_dir(path: Path) -> None:
    # A producer may not read incoming/ (mode 3733); the agent re-lists it anyway.
    fsync_dir(path, unreadable_ok=True)


# -- reading entries -----------------------------------------------------------------------------


def _read_capped(name: str, dir_fd: int, filename: str, what: str, cap: int, uid: int | None) -> bytes:
    try:
        fd = os.open(filename, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EntryRejected(name, f"{what} is a symlink") from exc
        raise EntryRejected(name, f"cannot open {what}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # checked before fdopen, which refuses a directory
        os.close(fd)
        raise EntryRejected(name, f"{what} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if st.st_nlink != 1:
            raise EntryRejected(name, f"{what} has {st.st_nlink} hard links")
        if st.st_mode & 0o022:
            # Another user who may write a file may also hard-link it into an entry of their own and
            # so pass it off as its owner's job (fs.protected_hardlinks lets them): not the owner's word.
            raise EntryRejected(name, f"{what} is writable by group or others (mode "
                                      f"{stat.S_IMODE(st.st_mode):04o}): chmod go-w it")
        if uid is not None and st.st_uid != uid:
            raise EntryRejected(name, f"{what} is owned by uid {st.st_uid}, the entry by uid {uid}")
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise EntryRejected(name, f"{what} is larger than the {cap}-byte limit")
    return data


def _text(name: str, data: bytes, what: str) -> str:
    if b"\0" in data:
        raise EntryRejected(name, f"{what} contains NUL bytes (binary file?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EntryRejected(name, f"{what} is not UTF-8 text (invalid byte at offset {exc.start})") from exc


# Refused as sbatch refuses them (a BOM hides the #! line and every directive after it).
_SCRIPT_FORMS: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda text: text.startswith("\ufeff"), "script starts with a byte order mark (save it without BOM)"),
    (lambda text: "\r\n" in text, "script contains DOS line breaks (\\r\\n): convert it with dos2unix"),
)


def _has_command(text: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


def check_script(name: str, data: bytes, cap: int = SCRIPT_MAX_BYTES) -> str:
    """The script as text, or EntryRejected (size, NUL, encoding, BOM, CRLF, empty, no command)."""
    if len(data) > cap:
        raise EntryRejected(name, f"script is larger than the {cap}-byte limit")
    text = _text(name, data, "script")
    if not text.strip():
        raise EntryRejected(name, "script is empty")
    for refused, reason in _SCRIPT_FORMS:
        if refused(text):
            raise EntryRejected(name, reason)
    if not _has_command(text):
        raise EntryRejected(name, "script has no command: only comments and directives")
    return text


def check_request(name: str, data: bytes) -> dict[str, Any]:
    """request.json as a dict, or EntryRejected."""
    text = _text(name, data, REQUEST)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EntryRejected(name, f"{REQUEST} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    except RecursionError as exc:
        raise EntryRejected(name, f"{REQUEST} is nested too deeply") from exc
    if not isinstance(value, dict):
        raise EntryRejected(name, f"{REQUEST} must hold a JSON object")
    return value


def _claim_names(name: str, tries: int = 1000) -> Iterator[str]:
    """`name`, then `name.2` ... (shortened to stay within NAME_RE's 100 characters)."""
    yield name
    for n in range(2, tries + 1):
        yield f"{name[:99 - len(str(n))]}.{n}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "the directory tree is too deep"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc)


def _owner_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


# -- the spool -----------------------------------------------------------------------------------


class Spool:
    """One spool directory tree; every method is safe to call from several agents at once."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        script_max_bytes: int = SCRIPT_MAX_BYTES,
        request_max_bytes: int = REQUEST_MAX_BYTES,
        plain_settle_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.script_max_bytes = script_max_bytes
        self.request_max_bytes = request_max_bytes
        self.plain_settle_s = plain_settle_s
        self._clock = clock

    incoming = property(lambda self: self.root / "incoming")
    claimed = property(lambda self: self.root / "claimed")
    failed = property(lambda self: self.root / "failed")
    results = property(lambda self: self.root / "results")
    logs = property(lambda self: self.root / "logs")
    socket_path = property(lambda self: self.root / "agent.sock")
    tmp = property(lambda self: self.root / "tmp")

    def ensure(self) -> Spool:
        """Create the layout; modes are set only on directories this call creates."""
        self.root.mkdir(parents=True, exist_ok=True)
        for sub, mode in DIR_MODES.items():
            path = self.root / sub
            with contextlib.suppress(FileExistsError):
                path.mkdir()
                os.chmod(path, mode)  # mkdir's mode is filtered by the umask; the sticky bit needs chmod
        return self

    # -- listing -----------------------------------------------------------------------------------

    def _scan(self, directory: Path) -> list[tuple[int, str, bool]]:
        found = []
        with os.scandir(directory) as it:
            for item in it:
                if is_ignored(item.name):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = item.stat(follow_symlinks=False)
                    found.append((st.st_mtime_ns, item.name, stat.S_ISREG(st.st_mode)))
        return sorted(found)

    def list_incoming(self) -> list[str]:
        """Entry names waiting in incoming/, oldest mtime first, then by name.

        Plain files modified within `plain_settle_s` are held back: someone may still be writing them.
        """
        limit = (self._clock() - self.plain_settle_s) * 1e9
        return [
            name for mtime, name, plain in self._scan(self.incoming)
            if (not plain or mtime <= limit) and not self.unmovable(name)
        ]

    def unmovable(self, name: str) -> bool:
        """An entry refused where it lies; its reason is failed/<name>.unmovable.reason."""
        return os.path.lexists(self.failed / f"{name}{UNMOVABLE}.reason")

    def unsettled_until(self) -> float | None:
        """When the newest held-back plain file becomes eligible (for the watcher), or None."""
        plain = [mtime for mtime, _name, is_plain in self._scan(self.incoming) if is_plain]
        deadline = max(plain, default=None)
        if deadline is None or deadline / 1e9 + self.plain_settle_s <= self._clock():
            return None
        return deadline / 1e9 + self.plain_settle_s

    def list_claimed(self) -> list[str]:
        """Entries claimed earlier (a restart resumes those without a job record)."""
        return [name for _mtime, name, _plain in self._scan(self.claimed)]

    # -- claim, load, quarantine -------------------------------------------------------------------

    def claim(self, name: str, taken: Callable[[str], bool] = lambda _name: False) -> Path:
        """Atomically move incoming/<name> into claimed/; only one claimer wins.

        Every drop is a new job: when claimed/<name> exists or `taken(name)` says a job already used
        the name (a second `job.sh`), the entry is claimed as `<name>.2`, `<name>.3`, ... Returns the
        claimed path. Raises AlreadyClaimed for the losers.
        """
        if is_ignored(name) or "/" in name or name in {"", ".", ".."}:
            raise ValueError(f"not a spool entry name: {name!r}")
        src = self.incoming / name
        try:
            for candidate in _claim_names(name):
                if taken(candidate):
                    continue
                with contextlib.suppress(FileExistsError):
                    rename_noreplace(src, self.claimed / candidate)
                    return self.claimed / candidate
        except FileNotFoundError as exc:
            raise AlreadyClaimed(f"spool entry {name!r} is already claimed") from exc
        except PermissionError as exc:
            # A directory the agent may not write cannot be moved, not even into failed/: its reason
            # is written beside failed/ and list_incoming() passes it over from now on.
            reason = f"cannot claim the entry: {exc.strerror} (is it readable and writable by the agent?)"
            self._write_reason(self.failed / f"{name}{UNMOVABLE}", src, reason)
            raise EntryRejected(name, reason) from exc
        reason = "no free name in claimed/ for this entry"
        self.quarantine(src, reason)
        raise EntryRejected(name, reason)

    def load(self, name: str) -> SpoolEntry:
        """Read and validate claimed/<name>; EntryRejected says why it cannot run."""
        if not NAME_RE.fullmatch(name):
            raise EntryRejected(name, f"invalid entry name (allowed: {NAME_RE.pattern})")
        path = self.claimed / name
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise EntryRejected(name, "entry is a symlink")
        if stat.S_ISDIR(st.st_mode):
            return self._load_dir(name, path)
        if not stat.S_ISREG(st.st_mode):
            raise EntryRejected(name, "entry is neither a regular file nor a directory")
        dir_fd = os.open(self.claimed, os.O_RDONLY | os.O_DIRECTORY)
        try:
            data = _read_capped(name, dir_fd, name, "script", self.script_max_bytes, st.st_uid)
        finally:
            os.close(dir_fd)
        script = check_script(name, data, self.script_max_bytes)
        uid, results = st.st_uid, self.results / name
        return SpoolEntry(name, path, "file", uid, _owner_name(uid), script, None, st.st_mtime, results)

    def _load_dir(self, name: str, path: Path) -> SpoolEntry:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            st = os.fstat(dir_fd)
            try:
                data = _read_capped(name, dir_fd, SCRIPT, "script", self.script_max_bytes, st.st_uid)
            except FileNotFoundError as exc:
                raise EntryRejected(name, "directory entry has no 'script' file") from exc
            try:
                raw = _read_capped(name, dir_fd, REQUEST, REQUEST, self.request_max_bytes, st.st_uid)
                request: dict[str, Any] | None = check_request(name, raw)
            except FileNotFoundError:
                request = None
        finally:
            os.close(dir_fd)
        script = check_script(name, data, self.script_max_bytes)
        uid = st.st_uid
        return SpoolEntry(name, path, "dir", uid, _owner_name(uid), script, request, st.st_mtime, None)

    def take(self, name: str, taken: Callable[[str], bool] = lambda _name: False) -> SpoolEntry:
        """claim() + load(); a rejected entry is quarantined before EntryRejected propagates."""
        claimed = self.claim(name, taken).name
        try:
            return self.load(claimed)
        except EntryRejected as exc:
            self.quarantine(self.claimed / claimed, exc.reason)
            raise

    def quarantine(self, entry: str | os.PathLike[str], reason: str) -> Path:
        """Move an entry (a name in claimed/ or incoming/, or a path) to failed/ and write `<dest>.reason`.

        Never deletes anything: a name already used in failed/ gets a numeric suffix.
        """
        src = Path(entry)
        if src.name == str(entry):  # a bare name: the claimed one wins, else the incoming one
            claimed = self.claimed / src.name
            src = claimed if os.path.lexists(claimed) else self.incoming / src.name
        for attempt in range(10_000):
            dest = self.failed / (src.name if attempt == 0 else f"{src.name}.{attempt}")
            if os.path.lexists(f"{dest}.reason"):
                continue
            try:
                rename_noreplace(src, dest)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"no free quarantine name for {src.name!r} in {self.failed}")
        self._write_reason(dest, src, reason)
        return dest

    def _write_reason(self, dest: Path, src: Path, reason: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock()))
        text = f"{reason}\nquarantined_at: {stamp}\nfrom: {src}\n"
        tmp = self.failed / f".{dest.name}.reason.{secrets.token_hex(4)}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, f"{dest}.reason")
        _fsync_dir(self.failed)

    def results_dir(self, name: str) -> Path:
        """results/<name>/ for a plain-file entry's outputs (created; the caller chowns it)."""
        path = self.results / name
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def retire(self, name: str) -> None:
        """Remove claimed/<name> once its job record is terminal (the record keeps the history).

        The entry directory is the user's: what the agent cannot remove (a subdirectory the user made
        0755, a tree too deep to walk) goes to failed/ with the reason, so claimed/ only ever holds
        live entries; an entry the agent cannot even move is marked unmovable there.
        """
        path = self.claimed / name
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            return
        except (OSError, RecursionError) as exc:
            reason = f"the job is over, but its entry could not be removed: {_describe(exc)}"
            try:
                self.quarantine(path, reason)
            except OSError as move_exc:
                reason += f"; nor moved to failed/: {move_exc.strerror}"
                self._write_reason(self.failed / f"{name}{UNMOVABLE}", path, reason)


# -- producer side ---------------------------------------------------------------------------------


def submit_entry(
    spool: Spool | str | os.PathLike[str],
    script_text: str,
    request: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    build: Callable[[Path], None] | None = None,
) -> str:
    """Write a directory entry into tmp/, fsync it, and rename it into incoming/; returns its name.

    Names are unguessable by default: incoming/ is not listable by users, so nobody else can read or
    race an entry they did not write.
    """
    sp = spool if isinstance(spool, Spool) else Spool(spool)
    name = name or f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(8)}"
    if not NAME_RE.fullmatch(name) or is_ignored(name):
        raise ValueError(f"invalid spool entry name {name!r}")
    script = script_text.encode("utf-8")
    check_script(name, script, sp.script_max_bytes)
    files = {SCRIPT: script}
    if request is not None:
        files[REQUEST] = json.dumps(request, sort_keys=True, indent=1).encode("utf-8")
        if len(files[REQUEST]) > sp.request_max_bytes:
            raise EntryRejected(name, f"{REQUEST} is larger than the {sp.request_max_bytes}-byte limit")
    staging = sp.tmp / f"{name}.{secrets.token_hex(4)}.tmp"
    os.mkdir(staging, 0o770)
    # Past the umask: the agent's group (inherited from tmp/) must be able to move and empty it.
    # Only the owner and that group can enter it, so the files inside may be 0644.
    os.chmod(staging, 0o770)
    try:
        for filename, data in files.items():
            fd = os.open(staging / filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            os.fchmod(fd, 0o644)  # whatever the umask: the agent reads it through its group's dir access
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        if build is not None:  # e.g. the relay adds its prepared inputs before the entry appears
            build(staging)
        _fsync_dir(staging)
        rename_noreplace(staging, sp.incoming / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(sp.incoming)
    return name


# -- watcher -----------------------------------------------------------------------------------------


class SpoolWatcher:
    """Wakes the intake loop when something arrives in incoming/ (inotify, else a 1 s rescan)."""

    def __init__(self, spool: Spool, *, poll_interval: float = 1.0, use_inotify: bool = True) -> None:
        self.spool = spool
        self.poll_interval = poll_interval
        self._inotify: Inotify | None = None
        if use_inotify:
            with contextlib.suppress(InotifyUnavailable):
                self._inotify = Inotify(spool.incoming, IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE)
        self._seen = self._snapshot()

    @property
    def mode(self) -> str:
        return "inotify" if self._inotify else "scan"

    def _snapshot(self) -> set[tuple[int, str]]:
        return {(mtime, name) for mtime, name, _plain in self.spool._scan(self.spool.incoming)}

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True once a new entry arrived or a held-back plain file settled."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            settle_at = self.spool.unsettled_until()
            step = remaining if settle_at is None else min(remaining, settle_at - time.time() + 0.01)
            if self._inotify is not None:
                if any(not name or not is_ignored(name) for name in self._inotify.wait(step)):
                    return True
            else:
                time.sleep(max(0.0, min(step, self.poll_interval)))
                current = self._snapshot()
                arrived, self._seen = bool(current - self._seen), current
                if arrived:
                    return True
            if settle_at is not None and time.time() >= settle_at:
                return True
        return False

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def __enter__(self) -> SpoolWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
