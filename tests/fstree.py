"""Build a directory tree from {relative path: bytes} (shared by the staging tests)."""

from __future__ import annotations

from pathlib import Path


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
