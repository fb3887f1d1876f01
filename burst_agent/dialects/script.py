"""parse_script: a batch script's text (plus the scheduler's request) -> ParsedScript (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from burst_agent.dialects import pbs, slurm
from burst_agent.dialects.common import Raw, apply_overrides, resolve
from burst_agent.dialects.prologue import scan, script_lines, shebang
from burst_agent.request import ParsedScript, ScriptWarning, TranslateError

SCHEDULERS = ("auto", "slurm", "pbs")
DEFAULT_SHELL = "/bin/bash"
_DIALECTS = {"slurm": (slurm.PREFIX, slurm.parse, "#SBATCH"), "pbs": (pbs.PREFIX, pbs.parse, "#PBS")}
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
        raise TranslateError("the script has both #SBATCH and #PBS directives: pass --scheduler")
    return present[0] if present else "slurm"


def parse_script(
    text: str, *, scheduler: str = "auto", request_overrides: Mapping[str, Any] | None = None
) -> ParsedScript:
    """Read the prologue's directives (and the scheduler's merged request, which wins)."""
    if scheduler not in SCHEDULERS:
        raise TranslateError(f"unknown scheduler {scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
    if text.startswith("\ufeff"):  # it would hide the #! line and so every directive after it
        raise TranslateError("the script starts with a byte order mark: save it without BOM", line=1)
    lines = script_lines(text)
    scanned = {name: scan(lines, prefix) for name, (prefix, _parse, _tag) in _DIALECTS.items()}
    if scheduler == "auto":
        scheduler = _detect({name: len(d) for name, (d, _late) in scanned.items()})
    raw = Raw()
    directives, late = scanned[scheduler]
    tag = _DIALECTS[scheduler][2]
    for number in late:
        raw.warnings.append(ScriptWarning(
            number, lines[number - 1].strip(), f"{tag} after the first command is ignored (as in {scheduler})"
        ))
    for name, (other, _late) in scanned.items():
        if name != scheduler and other:
            raw.warn(None, f"{len(other)} {_DIALECTS[name][2]} directive(s) ignored in a {scheduler} job")
    _DIALECTS[scheduler][1](directives, raw)
    if request_overrides is not None:
        apply_overrides(raw, request_overrides)
    request = resolve(raw, omp_from_cpus=scheduler == "pbs")
    # PBS runs the script with -S SHELL when given; otherwise the #! line is honoured.
    interpreter = (request.shell,) if request.shell else shebang(lines)
    if interpreter is None:
        interpreter = (DEFAULT_SHELL,)
        if scheduler == "slurm":
            raw.warn(None, f"no #! line (sbatch requires one): running with {interpreter[0]}")
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
