"""Validate remote-supplied relative paths before anything is written under a user's directory."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Collection
from pathlib import PurePosixPath

STAGING_DIR_NAME = ".burst-staging"
CONTROL_DIR_NAME = ".burst"
RESERVED_DIRS: frozenset[str] = frozenset({CONTROL_DIR_NAME, STAGING_DIR_NAME})

NAME_MAX = 255
PATH_MAX = 4096
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# Characters that make a name display as something else (U+202E turns "gpj.exe" into "exe.jpg"), or
# stand for bytes that were lost: by Unicode category, plus U+FFFD, which a decoder puts for bad bytes.
_HIDDEN: dict[str, str] = {
    "Cc": "a control character",
    "Cf": "a format character (bidi control, zero-width, byte order mark)",
    "Cs": "a lone surrogate (undecodable bytes)",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
_REPLACEMENT_CHAR = "\ufffd"
_HIDDEN_REPLACEMENT = "the replacement character (undecodable bytes)"


class UnsafePathError(ValueError):
    """A remote path that must not be written locally; carries the name and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"unsafe path {name!r}: {reason}")
        self.name = name
        self.reason = reason


def _hidden_kind(char: str) -> str | None:
    return _HIDDEN_REPLACEMENT if char == _REPLACEMENT_CHAR else _HIDDEN.get(unicodedata.category(char))


def _hidden_reason(text: str) -> str | None:
    """Why `text` would not display as what it is (its first such character), or None."""
    return next((f"contains U+{ord(c):04X}, {kind}" for c in text if (kind := _hidden_kind(c))), None)


def _escaped(char: str) -> str:
    text = repr(char)[1:-1]  # Python's own escapes: \\n, \\x1b, \\u202e, \\udcff, \\\\ (a backslash)
    return text if text != char else f"\\u{ord(char):04x}"  # U+FFFD is printable to repr


def display(name: str) -> str:
    """`name` for a log line, a reason or a terminal: every character of _HIDDEN escaped as repr() would
    (\\n, \\u202e) and backslashes doubled, so what is shown is what the name really is."""
    return "".join(_escaped(c) if c == "\\" or _hidden_kind(c) else c for c in name)


def _reject_reason(remote_path: str) -> str | None:
    """Reason to refuse the raw string before splitting, or None."""
    hidden = _hidden_reason(remote_path)
    checks: tuple[tuple[bool, str], ...] = (
        (not remote_path, "empty name"),
        ("\x00" in remote_path, "contains NUL"),
        (bool(_CONTROL_CHARS.search(remote_path)), "contains a control character"),
        (hidden is not None, hidden or ""),
        ("\\" in remote_path, "contains a backslash (Windows separator or escape)"),
        (remote_path.startswith("/"), "absolute path"),
        (len(remote_path.encode("utf-8", "surrogatepass")) > PATH_MAX, f"longer than {PATH_MAX} bytes"),
    )
    return next((reason for failed, reason in checks if failed), None)


def safe_relpath(remote_path: str, *, reserved_dirs: Collection[str] = RESERVED_DIRS) -> PurePosixPath:
    """Return the normalised relative path for `remote_path`, or raise UnsafePathError.

    `./` and empty components are dropped; `..` anywhere, absolute paths, backslashes, control and
    format characters (bidi controls, zero-width), lone surrogates and U+FFFD, over-long names and
    paths whose first component is a reserved dir are refused.
    """
    reason = _reject_reason(remote_path)
    if reason is not None:
        raise UnsafePathError(remote_path, reason)
    parts = [p for p in remote_path.split("/") if p not in ("", ".")]
    if not parts:
        raise UnsafePathError(remote_path, "empty name after normalisation")
    if ".." in parts:
        raise UnsafePathError(remote_path, "contains a '..' component")
    for part in parts:
        try:
            encoded = os.fsencode(part)
        except UnicodeEncodeError as exc:
            raise UnsafePathError(remote_path, "not representable in the local filesystem encoding") from exc
        if len(encoded) > NAME_MAX:
            raise UnsafePathError(remote_path, f"component longer than {NAME_MAX} bytes")
    if parts[0] in reserved_dirs:
        raise UnsafePathError(remote_path, f"inside the reserved directory {parts[0]!r}")
    return PurePosixPath(*parts)
