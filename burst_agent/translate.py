"""JobRequest + coretype catalogue + config -> the POST /api/v2/jobs/ body (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from burst_agent.arith import ceil_div
from burst_agent.command_wrapper import build_command, scheduler_environment
from burst_agent.dialects.registry import dialect
from burst_agent.dialects.script import parse_script
from burst_agent.model import CatalogueError, Coretype
from burst_agent.request import JobRequest, ParsedScript, ScriptWarning, TranslateError

if TYPE_CHECKING:  # config.py reads files; the pure core only needs the types
    from burst_agent.config import CoretypeRule, TranslateConfig

__all__ = [
    "Choice", "TranslationResult", "choose_hardware", "load_catalogue", "parse_script", "translate",
]
DEFAULT_JOB_NAME = "burst-job"


@dataclass(frozen=True)
class Choice:
    """A hardware shape: `slots` nodes of `cores_per_slot` cores of one coretype."""

    coretype: Coretype
    cores_per_slot: int
    slots: int

    @property
    def price_per_hour(self) -> Decimal:
        return self.coretype.price_per_core_hour * self.cores_per_slot * self.slots


@dataclass(frozen=True)
class TranslationResult:
    """The job body and the decisions behind it."""

    body: dict[str, Any]
    coretype: str
    cores_per_slot: int
    slots: int
    walltime_hours: int
    estimated_price_per_hour: Decimal
    analysis: tuple[str, str]
    warnings: tuple[ScriptWarning, ...]


def load_catalogue(data: object) -> list[Coretype]:
    """GET /api/v2/coretypes/ JSON (the paginated object or a plain list) -> coretypes."""
    items = data.get("results") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise CatalogueError("a coretype catalogue is a list or an object with a `results` list")
    for item in items:
        if not isinstance(item, Mapping):
            raise CatalogueError(f"coretype entry is not an object: {item!r:.200}")
    return [Coretype.from_api(dict(item)) for item in items]


def gpus_per_core(coretype: Coretype, cfg: TranslateConfig) -> float:
    return cfg.gpu_coretypes.get(coretype.code, 0.0)


def is_gpu_coretype(coretype: Coretype, cfg: TranslateConfig) -> bool:
    """Listed in gpu_coretypes, or named gpu-*: CPU jobs never land on these."""
    return gpus_per_core(coretype, cfg) > 0 or coretype.code.lower().startswith("gpu")



def _gpu_capacity(cores: int, per_core: float) -> int:
    return math.floor(cores * per_core + 1e-6)  # 8 x 0.125 must be 1, not 0.999..


def _slots_for(req: JobRequest, cores: int, mem_cap: int, gpu_cap: int) -> int | None:
    """Nodes of this size the request needs, or None when one node of it cannot hold the request."""
    c = req.cpus_per_task
    if req.nodes is not None:
        per_node = req.ntasks_per_node or ceil_div(req.ntasks, req.nodes)
        fits = cores >= per_node * c
        fits &= req.mem_per_node_mb is None or mem_cap >= req.mem_per_node_mb
        fits &= not req.gpus_per_node or gpu_cap >= req.gpus_per_node
        return req.nodes if fits else None
    limits = [cores // c, req.ntasks]
    if req.mem_per_cpu_mb:
        limits.append(mem_cap // (c * req.mem_per_cpu_mb))
    if req.gpus_per_task:
        limits.append(gpu_cap // req.gpus_per_task)
        if req.mem_per_gpu_mb:
            limits.append(mem_cap // (req.gpus_per_task * req.mem_per_gpu_mb))
    tasks_per_node = min(limits)
    if tasks_per_node < 1:
        return None
    if req.mem_per_node_mb is not None and mem_cap < req.mem_per_node_mb:
        return None
    if req.gpus_per_node and (gpu_cap < req.gpus_per_node or (
            req.mem_per_gpu_mb and mem_cap < req.gpus_per_node * req.mem_per_gpu_mb)):
        return None
    slots = ceil_div(req.ntasks, tasks_per_node)
    if req.gpus_total:
        gpus_on_node = min(gpu_cap, req.gpus_total)
        if gpu_cap < 1 or (req.mem_per_gpu_mb and mem_cap < gpus_on_node * req.mem_per_gpu_mb):
            return None
        slots = max(slots, ceil_div(req.gpus_total, gpu_cap))
    return slots if slots <= req.ntasks else None  # a node without a task could not use its GPUs


def _best_shape(req: JobRequest, coretype: Coretype, cfg: TranslateConfig) -> Choice | None:
    per_core = gpus_per_core(coretype, cfg)
    best: Choice | None = None
    for cores in coretype.cores:
        slots = _slots_for(req, cores, cores * coretype.memory_mb_per_core, _gpu_capacity(cores, per_core))
        if slots is not None:
            choice = Choice(coretype, cores, slots)
            if best is None or _rank(choice) < _rank(best):
                best = choice
    return best


def _rank(choice: Choice) -> tuple[Decimal, int, str, int]:
    return choice.price_per_hour, choice.slots, choice.coretype.code, choice.cores_per_slot


def memory_per_core_mb(req: JobRequest) -> float | None:
    if req.mem_per_cpu_mb is not None:
        return float(req.mem_per_cpu_mb)
    if req.mem_per_node_mb is not None and req.nodes is not None:
        per_node = req.ntasks_per_node or ceil_div(req.ntasks, req.nodes)
        return req.mem_per_node_mb / (per_node * req.cpus_per_task)
    return None


def _glob(pattern: str | None, value: str | None) -> bool:
    return pattern is None or (value is not None and fnmatchcase(value, pattern))


def rule_matches(rule: CoretypeRule, req: JobRequest) -> bool:
    """Unset keys match anything; a memory bound needs a memory request only for its minimum."""
    per_core = memory_per_core_mb(req)
    low, high = rule.min_memory_per_core_mb, rule.max_memory_per_core_mb
    return (
        _glob(rule.partition, req.partition)
        and _glob(rule.account, req.account)
        and _glob(rule.constraint, req.constraint)
        and (rule.gpus is None or rule.gpus == req.wants_gpus)
        and (low is None or (per_core is not None and per_core >= low))
        and (high is None or per_core is None or per_core <= high)
    )


def _describe(req: JobRequest) -> str:
    nodes = f"{req.nodes} node(s)" if req.nodes is not None else "any number of nodes"
    parts = [nodes, f"{req.ntasks} task(s) x {req.cpus_per_task} cpu(s)"]
    if req.ntasks_per_node:
        parts.append(f"{req.ntasks_per_node} task(s) per node")
    for value, label in ((req.mem_per_node_mb, "MB per node"), (req.mem_per_cpu_mb, "MB per cpu"),
                         (req.gpus_per_node, "GPU(s) per node"), (req.gpus_per_task, "GPU(s) per task"),
                         (req.gpus_total, "GPU(s) in total")):
        if value:
            parts.append(f"{value} {label}")
    return ", ".join(parts)


def choose_hardware(req: JobRequest, catalogue: Sequence[Coretype], cfg: TranslateConfig) -> Choice:
    """A matching rule's coretype, else the configured one, else (auto) the cheapest that fits."""
    by_code = {c.code: c for c in catalogue}
    rule = next((r for r in cfg.rules if rule_matches(r, req)), None)
    pinned = rule.coretype if rule is not None else (None if cfg.coretype == "auto" else cfg.coretype)
    if pinned is not None:
        why = "a translate.rules entry" if rule is not None else "translate.coretype"
        coretype = by_code.get(pinned)
        if coretype is None:
            raise TranslateError(f"coretype {pinned!r} (from {why}) is not in the catalogue")
        if coretype.is_deprecated:
            raise TranslateError(f"coretype {pinned!r} (from {why}) is deprecated")
        candidates = [coretype]
    else:
        gpu_ok = req.wants_gpus
        candidates = [c for c in catalogue if not c.is_deprecated and (gpu_ok or not is_gpu_coretype(c, cfg))]
    shapes = [s for s in (_best_shape(req, c, cfg) for c in candidates) if s is not None]
    if not shapes:
        what = f"coretype {pinned!r} cannot hold" if pinned else "no coretype fits"
        gpu_map = "is empty" if not cfg.gpu_coretypes else "names none of the candidate coretypes"
        gpu_hint = "" if not req.wants_gpus or any(c.code in cfg.gpu_coretypes for c in candidates) else (
            f"; translate.gpu_coretypes {gpu_map}: the coretype list has no GPU count, so the agent's "
            "config must give GPUs per core of each GPU coretype, e.g. translate: {gpu_coretypes: "
            "{gpu-ampere: 0.125}}")
        raise TranslateError(f"{what} the request: {_describe(req)}{gpu_hint}")
    return min(shapes, key=_rank)


def walltime_hours(parsed: ParsedScript, cfg: TranslateConfig) -> tuple[int, list[ScriptWarning]]:
    """Whole hours, at least the request (Rescale v2 `hardware.walltime` is in hours)."""
    req = parsed.request
    where = parsed.location("walltime_seconds")
    if req.walltime_unlimited:
        hours = max(1, math.floor(cfg.max_walltime_hours))
        return hours, [ScriptWarning(where.line, where.directive,
                                     f"no time limit: capped at translate.max_walltime_hours ({hours} h)")]
    if req.walltime_seconds is None:
        return max(1, math.ceil(cfg.default_walltime_hours)), []
    if req.walltime_seconds > cfg.max_walltime_hours * 3600:
        raise TranslateError(
            f"time limit {req.walltime_seconds / 3600:g} h is above translate.max_walltime_hours "
            f"({cfg.max_walltime_hours:g} h)", line=where.line, directive=where.directive)
    return max(1, ceil_div(req.walltime_seconds, 3600)), []


def choose_analysis(modules: Sequence[str], cfg: TranslateConfig) -> tuple[str, str]:
    """The first translate.analyses rule matching a `module load` line, else the default analysis."""
    for rule in cfg.analyses:
        for module in modules:
            if fnmatchcase(module, rule.module):
                version = rule.version or module.partition("/")[2] or cfg.analysis_version
                return rule.code, version
    return cfg.analysis_code, cfg.analysis_version


def _input_file(item: str | Mapping[str, Any]) -> dict[str, Any]:
    # `{"id"}` only: the API document defines `decompress` for storage-device staging, not job inputs.
    return {"id": item if isinstance(item, str) else item["id"]}


def translate(
    parsed: ParsedScript,
    catalogue: Sequence[Coretype],
    cfg: TranslateConfig,
    *,
    job_name_hint: str | None = None,
    input_file_ids: Sequence[str | Mapping[str, Any]] = (),
    env: Mapping[str, str] | None = None,
    job_ids: Mapping[str, str] | None = None,
    keep_outputs: str = "all",
) -> TranslationResult:
    """Pick the hardware and build the POST /api/v2/jobs/ body for a parsed script.

    `keep_outputs` is staging.keep_outputs_on_rescale (which outputs stay on Rescale once packed)."""
    req = parsed.request
    choice = choose_hardware(req, catalogue, cfg)
    cores = choice.cores_per_slot * choice.slots
    if cores > cfg.max_cores_per_job:
        where = parsed.location("nodes") if req.nodes else parsed.location("ntasks")
        raise TranslateError(
            f"the job comes to {cores} cores ({choice.slots} x {choice.cores_per_slot}); this site allows"
            f" at most {cfg.max_cores_per_job} (translate.max_cores_per_job)",
            line=where.line, directive=where.directive,
        )
    hours, warnings = walltime_hours(parsed, cfg)
    code, version = choose_analysis(parsed.modules, cfg)
    name = req.job_name or job_name_hint or DEFAULT_JOB_NAME
    ids = job_ids or {}
    job_id = ids.get("job_id") or req.job_id or "0"
    scheduler = dialect(parsed.scheduler)
    sched_env = scheduler_environment(
        req, scheduler.env, slots=choice.slots, cores_per_slot=choice.cores_per_slot,
        job_id=job_id, job_name=name, array_job_id=ids.get("array_job_id"),
    )
    command = build_command(
        sched_env, parsed.interpreter, ntasks=req.ntasks, nodefile=scheduler.nodefile,
        srun_shim=scheduler.srun_shim, keep_outputs=keep_outputs,
    )
    analysis: dict[str, Any] = {
        "analysis": {"code": code, "version": version},
        "command": command,
        "hardware": {
            "coreType": choice.coretype.code,
            "coresPerSlot": choice.cores_per_slot,
            "slots": choice.slots,
            "walltime": hours,
        },
        "inputFiles": [_input_file(item) for item in input_file_ids],
        "envVars": {**req.environment, **(env or {})},
    }
    return TranslationResult(
        body={"name": name, "jobanalyses": [analysis]},
        coretype=choice.coretype.code,
        cores_per_slot=choice.cores_per_slot,
        slots=choice.slots,
        walltime_hours=hours,
        estimated_price_per_hour=choice.price_per_hour,
        analysis=(code, version),
        warnings=tuple(sorted((*parsed.warnings, *warnings), key=lambda w: w.line or 0)),
    )
