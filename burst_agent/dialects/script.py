"""parse_script: a batch script's text (plus the scheduler's request) -> ParsedScript (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from burst_agent.dialects.common import Raw, resolve
from burst_agent.dialects.overrides import apply_overrides
from burst_agent.dialects.prologue import scan, script_lines, shebang
from burst_agent.dialects.record import Directives
from burst_agent.dialects.registry import DIALECTS, UNMARKED
from burst_agent.request import ParsedScript, ScriptWarning, TranslateError

# The dialects a script's directives can be read in, by name.
READABLE: dict[str, Directives] = {d.name: d.directives for d in DIALECTS.values() if d.directives}
SCHEDULERS = ("auto", *READABLE)
DEFAULT_SHELL = "/bin/bash"
_MODULE_LINE = re.compile(r"\s*(?:module\s+(?:load|add)|ml)\s+([^;&|#\n]*)")


def module_loads(lines: list[str]) -> tuple[str, ...]:
    """Every `module load A/1 B/2` (or `ml A/1`) in the script, in order."""
    found: list[str] = []
    for line in lines:
        match = _MODULE_LINE.match(line)
        if match:
            found.extend(w for w in match.group(1).split() if not w.startswith("-"))
    return tuple(found)


def _detect(counts: dict[str, int]) -> str:
    present = [name for name, count in counts.items() if count]
    if len(present) > 1:
        tags = " and ".join(READABLE[name].tag for name in present)
        raise TranslateError(f"the script has both {tags} directives: pass --scheduler")
    return present[0] if present else UNMARKED.name


def parse_script(
    text: str, *, scheduler: str = "auto", request_overrides: Mapping[str, Any] | None = None
) -> ParsedScript:
    """Read the prologue's directives (and the scheduler's merged request, which wins)."""
    if scheduler not in SCHEDULERS:
        raise TranslateError(f"unknown scheduler {scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
    if text.startswith("\ufeff"):  # it would hide the #! line and so every directive after it
        raise TranslateError("the script starts with a byte order mark: save it without BOM", line=1)
    lines = script_lines(text)
    scanned = {name: scan(lines, d.prefix) for name, d in READABLE.items()}
    if scheduler == "auto":
        scheduler = _detect({name: len(found) for name, (found, _late) in scanned.items()})
    raw = Raw()
    own = READABLE[scheduler]
    directives, late = scanned[scheduler]
    for number in late:
        raw.warnings.append(ScriptWarning(
            number, lines[number - 1].strip(),
            f"{own.tag} after the first command is ignored (as in {scheduler})",
        ))
    for name, (other, _late) in scanned.items():
        if name != scheduler and other:
            raw.warn(None, f"{len(other)} {READABLE[name].tag} directive(s) ignored in a {scheduler} job")
    own.parse(directives, raw)
    if request_overrides is not None:
        apply_overrides(raw, request_overrides)
    request = resolve(raw, omp_from_cpus=own.omp_from_cpus)
    # A shell the directives name (PBS -S) wins; otherwise the #! line is honoured.
    interpreter = (request.shell,) if request.shell else shebang(lines)
    if interpreter is None:
        interpreter = (DEFAULT_SHELL,)
        if own.shebang_required_by:
            raw.warn(None, f"no #! line ({own.shebang_required_by} requires one): running with "
                           f"{DEFAULT_SHELL}")
    return ParsedScript(
        scheduler=scheduler,
        request=request,
        warnings=tuple(_sorted(raw.warnings)),
        modules=module_loads(lines),
        interpreter=interpreter,
        sources=dict(raw.where),
        text=text,
    )


def _sorted(warnings: list[ScriptWarning]) -> list[ScriptWarning]:
    return sorted(dict.fromkeys(warnings), key=lambda w: w.line or 0)
