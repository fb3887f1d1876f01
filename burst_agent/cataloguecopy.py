"""A readable copy of the catalogue the agent translates with, for `burst-agent size-charges`.

The sizer runs as SlurmUser without the API token; it must size a job exactly as the agent will
translate it, so it reads the agent's own catalogue (and compute prices, when a tier is priced from
them) from <spool>/catalogue/. Neither holds anything secret: the files are world-readable.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

Fetch = Callable[[], list[dict[str, Any]]]


def catalogue_dir(spool_root: Path) -> Path:
    return spool_root / "catalogue"


def write_copy(path: Path, items: list[dict[str, Any]]) -> None:
    """Replace `path` with `items` as JSON, mode 0644; a copy that cannot be written is skipped."""
    try:
        path.parent.mkdir(exist_ok=True)
        os.chmod(path.parent, 0o755)  # the agent's umask (0027) would keep SlurmUser out
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(items, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        pass  # the agent's own work never depends on the copy


def published(fetch: Fetch, path: Path) -> Fetch:
    """`fetch`, also writing what it returns to `path`."""
    def fetched() -> list[dict[str, Any]]:
        items = fetch()
        write_copy(path, items)
        return items
    return fetched
