"""The shared prologue scanner: directive lines before the first command, split like a shell would."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from burst_agent.request import TranslateError


@dataclass(frozen=True)
class Directive:
    """One directive line: its 1-based number, its text (for messages) and its shell words."""

    line: int
    text: str
    words: tuple[str, ...]


def script_lines(text: str) -> list[str]:
    return [line.removesuffix("\r") for line in text.split("\n")]


def _is_prologue(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def split_words(rest: str, line: int, text: str) -> tuple[str, ...]:
    """Shell words of a directive's arguments; `# ...` after whitespace is a comment."""
    try:
        return tuple(shlex.split(rest, comments=True))
    except ValueError as exc:
        raise TranslateError(f"cannot split the directive: {exc}", line=line, directive=text) from exc


def scan(lines: list[str], prefix: re.Pattern[str]) -> tuple[list[Directive], list[int]]:
    """Directives of the prologue, and the numbers of look-alike directive lines after it (ignored)."""
    directives: list[Directive] = []
    late: list[int] = []
    in_prologue = True
    for number, line in enumerate(lines, start=1):
        if in_prologue and not _is_prologue(line):
            in_prologue = False
        match = prefix.match(line)
        if match is None:
            continue
        if not in_prologue:
            late.append(number)
            continue
        text = line.strip()
        directives.append(Directive(number, text, split_words(line[match.end() :], number, text)))
    return directives, late


def first_command_line(lines: list[str]) -> int | None:
    """Number of the first line that is neither blank nor a comment (where directives stop)."""
    for number, line in enumerate(lines, start=1):
        if not _is_prologue(line):
            return number
    return None


def shebang(lines: list[str]) -> tuple[str, ...] | None:
    """The interpreter of a `#!` line as the kernel sees it: the path and at most one argument."""
    if not lines or not lines[0].startswith("#!"):
        return None
    interpreter, _, argument = lines[0][2:].strip().partition(" ")
    if not interpreter:
        return None
    return (interpreter, argument.strip()) if argument.strip() else (interpreter,)
