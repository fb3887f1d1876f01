"""Size a held burst job's cloud-core charge: the cores its translation will run on Rescale (pure).

job_submit.lua (SIZE_CHARGE) holds each burst job with AdminComment `burst-agent:sizing`, charging
the estimate tasks x cpus. `burst-agent size-charges` (run as SlurmUser) reads the job's wrapper, which
embeds the original script and the scheduler's request, translates it as the agent will, sets the
job's `license/rescale_cores` to that many cores and releases it: Slurm fixes a job's TRES when it
starts, so this is the only moment the charge can be made exact.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from burst_agent.dialects import parse_script
from burst_agent.model import Coretype
from burst_agent.request import TranslateError
from burst_agent.translate import translate

SIZING_MARK = "burst-agent:sizing"  # the AdminComment of a job held for sizing
SIZING_HELD_MARK = "burst-agent:sizing,held"  # the same for a job submitted --hold: sized, not released
SIZED_MARK = "burst-agent"  # the AdminComment every other burst job carries
_BLOCK = r"<<'BURST_AGENT_{name}'\n(.*?)\nBURST_AGENT_{name}\n"
# squeue's fields of a pending burst job: raw job id, reason, account, QOS, licenses. None of these can
# hold a "|" (names and counts), unlike a job name or comment, which the user writes.
SQUEUE_FORMAT = "%A|%r|%a|%q|%W"
_ADMIN_COMMENT = re.compile(r"(?:^|\s)AdminComment=(\S*)")


@dataclass(frozen=True)
class HeldJob:
    """A pending burst job held by job_submit.lua, as squeue tells it."""

    job_id: str
    licenses: str
    account: str | None
    qos: str | None


def held_jobs(squeue_output: str) -> list[HeldJob]:
    """The held jobs in `squeue -h -t PD -o SQUEUE_FORMAT` output (reason JobHeldAdmin or JobHeldUser)."""
    found = []
    for line in squeue_output.splitlines():
        parts = line.split("|")
        if len(parts) != 5 or not parts[0].isdigit() or not parts[1].startswith("JobHeld"):
            continue
        def text(value: str) -> str | None:
            return None if value in ("", "(null)", "N/A") else value
        found.append(HeldJob(parts[0], text(parts[4]) or "", text(parts[2]), text(parts[3])))
    return found


def sizing_mark(show_job_output: str) -> str | None:
    """The sizing mark `scontrol show job -o` gives as AdminComment, once; else None. A job name or
    comment (the user's text) that repeats the field makes it unreadable, and the job is left alone."""
    found = _ADMIN_COMMENT.findall(show_job_output)
    return found[0] if len(found) == 1 and found[0] in (SIZING_MARK, SIZING_HELD_MARK) else None


def unreadable(show_job_output: str) -> bool:
    """Whether the line repeats AdminComment= (job_submit.lua refuses such names, paths and comments
    when SIZE_CHARGE is on; a job submitted before it was turned on may still have one)."""
    return len(_ADMIN_COMMENT.findall(show_job_output)) > 1


def embedded(wrapper: str) -> tuple[str, dict[str, Any]] | None:
    """(original script, request) from a relay wrapper written by job_submit.lua; None if it is not one."""
    parts = []
    for name in ("SCRIPT", "REQUEST"):
        match = re.search(_BLOCK.format(name=name), wrapper, re.S)
        if match is None:
            return None
        try:
            parts.append(base64.b64decode("".join(match.group(1).split()), validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            return None
    try:
        request = json.loads(parts[1])
    except ValueError:
        return None
    return (parts[0], request) if isinstance(request, dict) else None


def sized_cores(script: str, request: Mapping[str, Any], job: HeldJob, catalogue: Sequence[Coretype],
                translate_cfg: Any) -> int:
    """The cores the agent's translation gives the job (account and QOS as the relay will see them).
    Raises TranslateError when the script cannot run on Rescale."""
    merged = dict(request)
    merged["account"] = merged.get("account") or job.account
    merged["qos"] = merged.get("qos") or job.qos
    parsed = parse_script(script, scheduler="slurm", request_overrides=merged)
    result = translate(parsed, catalogue, translate_cfg)
    return result.cores_per_slot * result.slots


def with_license(licenses: str, name: str, cores: int) -> str:
    """`licenses` with `name` set to `cores` and the others kept ("rescale_cores:8,matlab:1")."""
    kept = [item for item in licenses.split(",") if item and re.split("[:@=]", item, maxsplit=1)[0] != name]
    return ",".join([*kept, f"{name}:{cores}"])


@dataclass(frozen=True)
class Sizing:
    """What to do with one held job: the Licenses to set (None: keep the estimate) and why."""

    job_id: str
    licenses: str | None
    note: str


def size(job: HeldJob, wrapper: str | None, catalogue: Sequence[Coretype], translate_cfg: Any,
         license_name: str) -> Sizing:
    """The job's sizing. A job that cannot be sized keeps the estimate and is released all the same:
    the agent gives the real reason when it runs (a rejected script is reported, never stuck here)."""
    found = embedded(wrapper) if wrapper is not None else None
    if found is None:
        return Sizing(job.job_id, None, "no relay wrapper in its batch script: estimate kept")
    try:
        cores = sized_cores(*found, job, catalogue, translate_cfg)
    except (TranslateError, ValueError) as exc:
        return Sizing(job.job_id, None, f"not translatable ({str(exc)[:160]}): estimate kept")
    return Sizing(job.job_id, with_license(job.licenses, license_name, cores), f"{cores} cloud cores")
