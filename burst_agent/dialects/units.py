"""Time and memory value parsers for Slurm and PBS (pure): times in seconds, memory in MB."""

from __future__ import annotations

import re

from burst_agent.arith import ceil_div

MB = 1024 * 1024
# str.strip() and int() take any Unicode space (\x1f, U+2003) and int() takes Unicode digits and `_`:
# numbers here are ASCII digits, with at most blanks around them.
BLANKS = " \t"
MAX_DIGITS = 30  # far past any real count or size, and well under int()'s 4300-digit limit


class UnitError(ValueError):
    """A time or memory value is not in a form the scheduler accepts."""



def shown(value: object, limit: int = 40) -> str:
    """repr() of a value for a message, cut to about `limit` characters."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past 4300 digits; a list nested to the recursion limit
        return f"{type(value).__name__} too large to show"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def to_int(digits: str, text: str) -> int:
    """ASCII `digits` (already matched) as an int; more than MAX_DIGITS of them is a UnitError."""
    if len(digits) > MAX_DIGITS:
        raise UnitError(f"invalid number in {shown(text)}: more than {MAX_DIGITS} digits")
    return int(digits)


# Slurm --time forms, each: regex -> field names. Leading field unbounded, the rest bounded.
_SLURM_TIME_FORMS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern, re.ASCII), names)
    for pattern, names in (
        (r"(\d+)", ("m",)),
        (r"(\d+):(\d+)", ("m", "s")),
        (r"(\d+):(\d+):(\d+)", ("h", "m", "s")),
        (r"(\d+)-(\d+)", ("d", "h")),
        (r"(\d+)-(\d+):(\d+)", ("d", "h", "m")),
        (r"(\d+)-(\d+):(\d+):(\d+)", ("d", "h", "m", "s")),
    )
)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_LIMIT = {"h": 24, "m": 60, "s": 60}
UNLIMITED_WORDS = frozenset({"UNLIMITED", "INFINITE"})


def _sum_fields(values: tuple[str, ...], names: tuple[str, ...], text: str) -> int:
    total = 0
    for i, (value, name) in enumerate(zip(values, names, strict=True)):
        number = to_int(value, text)
        if i > 0 and number >= _UNIT_LIMIT.get(name, number + 1):
            raise UnitError(f"invalid time {shown(text)}: {name} field {number} is out of range")
        total += number * _UNIT_SECONDS[name]
    return total


def parse_slurm_time(text: str) -> int | None:
    """Slurm --time in seconds; None means no limit (UNLIMITED, INFINITE or 0)."""
    value = text.strip(BLANKS)
    if value.upper() in UNLIMITED_WORDS:
        return None
    for pattern, names in _SLURM_TIME_FORMS:
        match = pattern.fullmatch(value)
        if match:
            seconds = _sum_fields(match.groups(), names, text)
            return seconds or None  # Slurm: a time limit of 0 means no limit
    raise UnitError(f"invalid time {shown(text)}: expected minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, "
                    "D-HH:MM:SS or UNLIMITED")


_PBS_TIME = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+):(\d+)|(\d+)", re.ASCII)


def parse_pbs_time(text: str) -> int:
    """PBS walltime in seconds: seconds, MM:SS, HH:MM:SS or D:HH:MM:SS."""
    match = _PBS_TIME.fullmatch(text.strip(BLANKS))
    if not match:
        raise UnitError(f"invalid time {shown(text)}: expected seconds, MM:SS, HH:MM:SS or D:HH:MM:SS")
    d, h, m, s, plain = match.groups()
    if plain is not None:
        seconds = to_int(plain, text)
    else:
        fields = [(v, n) for v, n in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if v is not None]
        seconds = _sum_fields(tuple(v for v, _ in fields), tuple(n for _, n in fields), text)
    if seconds <= 0:
        raise UnitError(f"invalid time {shown(text)}: the walltime must be positive")
    return seconds


def format_slurm_time(seconds: int, form: str) -> str:
    """Inverse of parse_slurm_time for one form ("m", "m:s", "h:m:s", "d-h", "d-h:m", "d-h:m:s")."""
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    formats = {
        "m": lambda: str(seconds // 60),
        "m:s": lambda: f"{seconds // 60}:{s:02d}",
        "h:m:s": lambda: f"{seconds // 3600}:{m:02d}:{s:02d}",
        "d-h": lambda: f"{d}-{h:02d}",
        "d-h:m": lambda: f"{d}-{h:02d}:{m:02d}",
        "d-h:m:s": lambda: f"{d}-{h:02d}:{m:02d}:{s:02d}",
    }
    return formats[form]()


def format_pbs_time(seconds: int, form: str) -> str:
    """Inverse of parse_pbs_time for one form ("s", "m:s", "h:m:s", "d:h:m:s")."""
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    formats = {
        "s": lambda: str(seconds),
        "m:s": lambda: f"{seconds // 60}:{s:02d}",
        "h:m:s": lambda: f"{seconds // 3600}:{m:02d}:{s:02d}",
        "d:h:m:s": lambda: f"{d}:{h:02d}:{m:02d}:{s:02d}",
    }
    return formats[form]()


_SLURM_MEM = re.compile(r"(\d+)(?:([KMGT])B?)?", re.ASCII | re.IGNORECASE)
_SLURM_MEM_KB = {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}


def parse_slurm_memory(text: str) -> int:
    """Slurm --mem value in MB (rounded up): no unit = MB; K/M/G/T with optional B, any case."""
    match = _SLURM_MEM.fullmatch(text.strip(BLANKS))
    if not match:
        raise UnitError(f"invalid memory {shown(text)}: expected a number with an optional K, M, G or T unit")
    number, unit = match.groups()
    kib = to_int(number, text) * _SLURM_MEM_KB[(unit or "M").upper()]
    return ceil_div(kib, 1024)


_PBS_MEM = re.compile(r"(\d+)([kmgt]?[bw])?", re.ASCII | re.IGNORECASE)
_PBS_MEM_SCALE = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_pbs_memory(text: str) -> int:
    """PBS size in MB (rounded up): b/kb/mb/gb/tb (or w/kw/.. words of 8 bytes); no unit = bytes."""
    match = _PBS_MEM.fullmatch(text.strip(BLANKS))
    if not match:
        raise UnitError(f"invalid memory {shown(text)}: expected a number with an optional b/kb/mb/gb/tb "
                        "unit")
    number, unit = match.groups()
    unit = (unit or "b").lower()
    size = to_int(number, text) * _PBS_MEM_SCALE[unit[:-1]] * (8 if unit.endswith("w") else 1)
    return ceil_div(size, MB)


def format_slurm_memory(mb: int, unit: str) -> str:
    """A Slurm memory string for `mb` megabytes in unit "", "K", "M", "G", "T" (exact when divisible)."""
    kib = mb * 1024
    return f"{kib // _SLURM_MEM_KB[unit or 'M']}{unit}"


def format_pbs_memory(mb: int, unit: str) -> str:
    """A PBS size string for `mb` megabytes in unit "b", "kb", "mb", "gb", "tb"."""
    return f"{mb * MB // _PBS_MEM_SCALE[unit[:-1]]}{unit}"
