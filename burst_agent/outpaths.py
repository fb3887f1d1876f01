"""Expand scheduler output-file patterns (slurm-%j.out, %x, %A_%a, ...) into a path (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping

_PATTERN = re.compile(r"%(%|[jJxuAaN])")

# Pattern letter -> key of the values mapping (sbatch's filename patterns that make sense here).
_LETTERS: dict[str, str] = {
    "j": "job_id", "J": "job_id", "x": "job_name", "u": "user", "A": "array_job_id",
    "a": "array_task_id", "N": "node",
}


def expand(pattern: str, values: Mapping[str, str | None]) -> str:
    """Replace %j, %x, %u, %A, %a, %N and %% the way sbatch does; unknown values become '0'."""

    def repl(match: re.Match[str]) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        return str(values.get(_LETTERS[letter]) or "0")

    return _PATTERN.sub(repl, pattern)
