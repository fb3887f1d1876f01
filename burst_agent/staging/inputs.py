"""Choose which files of a job's working directory travel to Rescale (no uploads here)."""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pathspec

from burst_agent.staging.safepath import CONTROL_DIR_NAME, STAGING_DIR_NAME

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_LARGE_THRESHOLD = 64 * MiB
DEFAULT_MAX_TOTAL_BYTES = 50 * GiB
DEFAULT_MAX_FILES = 50_000

IGNORE_FILE = ".burstignore"
# Uploaded under names no server takes for an archive (no .tar/.zip/.gz...): the remote command unpacks
# the bundle and renames the large files itself, so nothing depends on a server's (undocumented) unpacking.
BUNDLE_NAME = "burst-inputs.bundle"
UPLOAD_PREFIX = ".burst-in-"
# Appended after the user's .burstignore lines, so a `!` line cannot re-include them.
_DEFAULT_MODE_IGNORES = (".git/", f"/{IGNORE_FILE}")
# Excluded in both modes: the remote control dir, our own stage-out staging dir, the scheduler's logs:
# Slurm's slurm-*.out, PBS's NAME.o<seq> / NAME.e<seq> (array tasks: .o<seq>.<index> or -<index>).
_ALWAYS_EXCLUDED_TOP = (CONTROL_DIR_NAME, STAGING_DIR_NAME)
_SCHEDULER_LOG = re.compile(r"slurm-.*\.out|.+\.[oe][0-9]+(?:[.-][0-9]+)?", re.ASCII | re.DOTALL)
_DIRECTIVE = re.compile(r"^\s*#BURST\s+--input(?:=|\s+|$)(.*)$")
_WILDCARD = re.compile(r"[*?\[]")


class InputSelectionError(ValueError):
    """The job's inputs cannot be selected as asked."""


class InputTooLargeError(InputSelectionError):
    """The selected inputs exceed a configured cap."""

    def __init__(self, cap_name: str, cap: int, actual: int, unit: str) -> None:
        super().__init__(f"job inputs are {_fmt(actual, unit)}, over the cap {cap_name}={_fmt(cap, unit)}")
        self.cap_name = cap_name
        self.cap = cap
        self.actual = actual


class InputPatternError(InputSelectionError):
    """A `#BURST --input` line is invalid or matches nothing."""

    def __init__(self, lineno: int, line: str, reason: str) -> None:
        super().__init__(f"script line {lineno}: {line.strip()!r}: {reason}")
        self.lineno = lineno
        self.line = line


@dataclass(frozen=True)
class InputFile:
    """One file to send: its path under the workdir and the file whose bytes are read."""

    rel: PurePosixPath
    source: Path
    size: int


@dataclass(frozen=True)
class InputPlan:
    """The selected inputs, split into bundle members and individually uploaded large files."""

    workdir: Path
    bundle_members: list[InputFile]
    large_files: list[InputFile]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Directive:
    lineno: int
    line: str
    pattern: str


def _fmt(value: int, unit: str) -> str:
    if unit == "bytes" and value >= MiB:
        return f"{value / GiB:.2f} GiB ({value} bytes)"
    return f"{value} {unit}"


def parse_input_directives(script_text: str) -> list[_Directive]:
    """Every `#BURST --input PATTERN...` line anywhere in the script, one directive per pattern."""
    found: list[_Directive] = []
    for lineno, line in enumerate(script_text.splitlines(), start=1):
        match = _DIRECTIVE.match(line)
        if match is None:
            continue
        try:
            patterns = shlex.split(match.group(1), comments=False)
        except ValueError as exc:
            raise InputPatternError(lineno, line, f"cannot parse: {exc}") from exc
        if not patterns:
            raise InputPatternError(lineno, line, "no path or glob given")
        found.extend(_Directive(lineno, line, _clean_pattern(p, lineno, line)) for p in patterns)
    return found


def _clean_pattern(pattern: str, lineno: int, line: str) -> str:
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    problems = (
        (pattern.startswith("/"), "absolute paths are not allowed; use a path relative to the workdir"),
        (".." in parts, "'..' is not allowed"),
        (not parts, "empty pattern"),
        (pattern.startswith("!"), "negated patterns are not supported"),
        ("\x00" in pattern, "contains NUL"),
    )
    for failed, reason in problems:
        if failed:
            raise InputPatternError(lineno, line, reason)
    return "/".join(parts)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _walk(workdir: Path, rel_dir: str, prune: Callable[[str], bool], warnings: list[str]) -> Iterator[str]:
    """Relative paths of non-directories under rel_dir, sorted, never descending into symlinks."""
    try:
        with os.scandir(workdir / rel_dir if rel_dir else workdir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        warnings.append(f"{rel_dir or '.'}: cannot list directory ({exc.strerror}); skipped")
        return
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        if entry.is_dir(follow_symlinks=False):
            if not prune(rel + "/"):
                yield from _walk(workdir, rel, prune, warnings)
        elif not prune(rel):
            yield rel


def _classify(workdir: Path, rel: str, warnings: list[str]) -> InputFile | None:
    """An InputFile for a regular file or an in-tree symlink to one; None (with a warning) otherwise."""
    path = workdir / rel
    root = str(workdir)
    if os.path.realpath(path.parent) != str(path.parent):
        warnings.append(f"{rel}: reached through a symlinked directory; skipped")
        return None
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        return InputFile(PurePosixPath(rel), path, st.st_size)
    if not stat.S_ISLNK(st.st_mode):
        warnings.append(f"{rel}: not a regular file; skipped")
        return None
    target = os.path.realpath(path)
    if not _inside(target, root):
        warnings.append(f"{rel}: symlink points outside the working directory; skipped")
        return None
    try:
        tst = os.stat(target)
    except OSError:
        warnings.append(f"{rel}: dangling symlink; skipped")
        return None
    if not stat.S_ISREG(tst.st_mode):
        warnings.append(f"{rel}: symlink to a directory or special file; skipped")
        return None
    return InputFile(PurePosixPath(rel), Path(target), tst.st_size)


def _excluded_rels(workdir: Path, exclude: Iterable[Path]) -> set[str]:
    """Workdir-relative forms (literal and symlink-resolved) of the caller's excluded paths."""
    rels: set[str] = set()
    root = str(workdir)
    for path in exclude:
        full = path if path.is_absolute() else workdir / path
        for form in {os.path.abspath(full), os.path.realpath(full)}:
            if _inside(form, root) and form != root:
                rels.add(os.path.relpath(form, root))
    return rels


def _default_candidates(workdir: Path, warnings: list[str]) -> Iterator[str]:
    ignore_path = workdir / IGNORE_FILE
    try:
        user_lines = ignore_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        user_lines = []
    except (OSError, UnicodeDecodeError) as exc:
        raise InputSelectionError(f"cannot read {ignore_path}: {exc}") from exc
    spec = pathspec.GitIgnoreSpec.from_lines([*user_lines, *_DEFAULT_MODE_IGNORES])
    yield from _walk(workdir, "", spec.match_file, warnings)


def _literal_prefix(pattern: str) -> str:
    """The leading directory components of a pattern that contain no wildcard."""
    parts = pattern.split("/")
    cut = next((i for i, part in enumerate(parts) if _WILDCARD.search(part)), len(parts))
    return "/".join(parts[:cut])


def _is_real_dir(path: Path) -> bool:
    return os.path.isdir(path) and os.path.realpath(path) == str(path)


def _pattern_candidates(workdir: Path, directive: _Directive, warnings: list[str]) -> list[str]:
    """Paths a directive names; a directory (named or matched) stands for everything beneath it."""
    pattern = directive.pattern
    base = _literal_prefix(pattern)
    if base == pattern:
        path = workdir / base
        if _is_real_dir(path):
            return list(_walk(workdir, base, lambda _rel: False, warnings))
        # A file, or a symlink / odd path that _classify will skip with a warning.
        return [base] if os.path.lexists(path) else []
    if not _is_real_dir(workdir / base if base else workdir):
        return []
    spec = pathspec.GitIgnoreSpec.from_lines(["/" + pattern])
    return [rel for rel in _walk(workdir, base, lambda _rel: False, warnings) if spec.match_file(rel)]


def _always_excluded(rel: str, excluded: set[str]) -> bool:
    top = rel.split("/", 1)[0]
    return (
        top in _ALWAYS_EXCLUDED_TOP
        or _SCHEDULER_LOG.fullmatch(rel.rsplit("/", 1)[-1]) is not None
        or any(rel == ex or rel.startswith(ex + "/") for ex in excluded)
    )


def _check_caps(files: list[InputFile], max_total_bytes: int, max_files: int) -> None:
    if len(files) > max_files:
        raise InputTooLargeError("max_files", max_files, len(files), "files")
    total = sum(f.size for f in files)
    if total > max_total_bytes:
        raise InputTooLargeError("max_total_bytes", max_total_bytes, total, "bytes")


def plan_inputs(
    workdir: Path,
    script_text: str,
    *,
    exclude: Iterable[Path] = (),
    large_threshold: int = DEFAULT_LARGE_THRESHOLD,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> InputPlan:
    """Select the job's inputs: `#BURST --input` patterns if any, else the whole workdir minus ignores.

    `exclude` holds the job script and the scheduler's stdout/stderr paths (absolute or workdir-relative).
    """
    root = Path(os.path.realpath(workdir))
    warnings: list[str] = []
    directives = parse_input_directives(script_text)
    if directives:
        candidates: list[str] = []
        for directive in directives:
            matched = _pattern_candidates(root, directive, warnings)
            if not matched:
                reason = f"{directive.pattern!r} matches nothing"
                raise InputPatternError(directive.lineno, directive.line, reason)
            candidates.extend(matched)
    else:
        candidates = list(_default_candidates(root, warnings))
    excluded = _excluded_rels(root, exclude)
    chosen = sorted({rel for rel in candidates if not _always_excluded(rel, excluded)})
    files = [f for f in (_classify(root, rel, warnings) for rel in chosen) if f is not None]
    for f in files:
        if str(f.rel) == BUNDLE_NAME or str(f.rel).startswith(UPLOAD_PREFIX):
            raise InputSelectionError(f"{f.rel}: the names {BUNDLE_NAME!r} and {UPLOAD_PREFIX}* at the top "
                                      "of the workdir are reserved for the agent's uploads")
    _check_caps(files, max_total_bytes, max_files)
    return InputPlan(
        workdir=root,
        bundle_members=[f for f in files if f.size < large_threshold],
        large_files=[f for f in files if f.size >= large_threshold],
        warnings=warnings,
    )
