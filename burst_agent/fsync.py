"""Durable renames: fsync a directory after an entry in it was created, renamed or removed."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path, *, unreadable_ok: bool = False) -> None:
    """fsync `path` (a directory); with `unreadable_ok`, a directory we may not open is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        if unreadable_ok:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
