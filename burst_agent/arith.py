"""Integer arithmetic the core shares (pure)."""

from __future__ import annotations


def ceil_div(a: int, b: int) -> int:
    """a / b rounded up, in integers (no float on the way: counts of cores, bytes, nodes)."""
    return -(-a // b)
