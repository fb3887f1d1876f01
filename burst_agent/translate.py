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
from burst_agent.model import PLAN_PREFIX, CatalogueError, Coretype, price_value
from burst_agent.record import Hardware
from burst_agent.request import JobRequest, ParsedScript, ScriptWarning, TranslateError
from burst_agent.tiers import TIERS, choose_tier, price_source, tier_price

if TYPE_CHECKING:  # config.py reads files; the pure core only needs the types
    from burst_agent.config import CoretypeRule, TranslateConfig

__all__ = [
    "Choice", "TranslationResult", "choose_hardware", "load_catalogue", "parse_script", "ranked_hardware",
    "translate",
]
DEFAULT_JOB_NAME = "burst-job"


@dataclass(frozen=True)
class Choice:
    """A hardware shape: `slots` nodes of `cores_per_slot` cores of one coretype, at its tier's price."""

    coretype: Coretype
    cores_per_slot: int
    slots: int
    price_per_core_hour: Decimal

    @property
    def price_per_hour(self) -> Decimal:
        return self.price_per_core_hour * self.cores_per_slot * self.slots


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
    tier: str  # the priority tier (tiers.py) the job runs, and is priced, in
    price_per_core_hour: Decimal  # the coretype's price in that tier: every estimate's
    # Capacity failover: the next cheapest coretypes that fit, in order, each with its own body.
    fallbacks: tuple[Hardware, ...] = ()


def _items(data: object, what: str) -> list[Mapping[str, Any]]:
    items = data.get("results") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise CatalogueError(f"{what} is a list or an object with a `results` list")
    for item in items:
        if not isinstance(item, Mapping):
            raise CatalogueError(f"{what} entry is not an object: {item!r:.200}")
    return items


def plan_prices(data: object) -> dict[str, dict[str, Decimal]]:
    """GET /billing/computeprices/ JSON -> {coretype: {planType: price per core-hour}}: active Linux prices
    only (the remote command is bash on Linux)."""
    found: dict[str, dict[str, Decimal]] = {}
    for item in _items(data, "a compute price list"):
        code, plan, value = item.get("coreType"), item.get("planType"), item.get("value")
        if item.get("os") != "linux" or item.get("isActive") is not True:
            continue
        amount = value.get("amount") if isinstance(value, Mapping) else None
        if not isinstance(code, str) or not isinstance(plan, str) or amount is None:
            raise CatalogueError(f"compute price without a coreType, planType or value.amount: {item!r:.200}")
        found.setdefault(code, {}).setdefault(plan, price_value(amount, f"plan {plan!r} price", code))
    return found


def load_catalogue(data: object, prices: object = None) -> list[Coretype]:
    """GET /api/v2/coretypes/ JSON (the paginated object or a plain list) -> coretypes; `prices`, the JSON
    of GET /billing/computeprices/, adds each coretype's plan prices (tiers.py prices a tier by one)."""
    by_plan = plan_prices(prices) if prices is not None else {}
    return [Coretype.from_api(dict(item), by_plan.get(str(item.get("code")), {}))
            for item in _items(data, "a coretype catalogue")]


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


def _best_shape(req: JobRequest, coretype: Coretype, price: Decimal, cfg: TranslateConfig) -> Choice | None:
    per_core = gpus_per_core(coretype, cfg)
    best: Choice | None = None
    for cores in coretype.cores:
        slots = _slots_for(req, cores, cores * coretype.memory_mb_per_core, _gpu_capacity(cores, per_core))
        if slots is not None:
            choice = Choice(coretype, cores, slots, price)
            if best is None or _rank(choice) < _rank(best):
                best = choice
    return best


def _source(tier: str, plans: dict[str, str]) -> str:
    """Where a tier's price was looked for, for messages."""
    source = price_source(tier, plans)
    if source is None:
        return "none: name its computeprices plan in translate.priority_tiers.plan_prices"
    if source.startswith(PLAN_PREFIX):
        return f"computeprices plan {source.removeprefix(PLAN_PREFIX)!r}"
    return f"the coretype list's {source}"


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


def choose_hardware(req: JobRequest, catalogue: Sequence[Coretype], cfg: TranslateConfig,
                    tier: str | None = None) -> Choice:
    """A matching rule's coretype, else the configured one, else (auto) the cheapest that fits, at the
    prices of `tier` (default: translate.priority_tiers.default); a coretype without one is no candidate."""
    return ranked_hardware(req, catalogue, cfg, tier)[0]


def ranked_hardware(req: JobRequest, catalogue: Sequence[Coretype], cfg: TranslateConfig,
                    tier: str | None = None) -> list[Choice]:
    """Every candidate's best shape, cheapest first (one when a rule or translate.coretype pins it);
    TranslateError when none fits."""
    tier = tier or cfg.priority_tiers.default
    plans = cfg.priority_tiers.plan_prices
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
        if tier_price(coretype, tier, plans) is None:
            raise TranslateError(
                f"coretype {pinned!r} (from {why}) has no {tier} price ({_source(tier, plans)})")
        candidates = [coretype]
    else:
        gpu_ok = req.wants_gpus
        candidates = [c for c in catalogue if not c.is_deprecated and (gpu_ok or not is_gpu_coretype(c, cfg))]
    priced = [(c, p) for c, p in ((c, tier_price(c, tier, plans)) for c in candidates) if p is not None]
    shapes = [s for s in (_best_shape(req, c, p, cfg) for c, p in priced) if s is not None]
    if not shapes:
        what = f"coretype {pinned!r} cannot hold" if pinned else "no coretype fits"
        unpriced = len(candidates) - len(priced)
        price_hint = (f"; {unpriced} coretype(s) have no {tier} price ({_source(tier, plans)})"
                      if unpriced else "")
        gpu_map = "is empty" if not cfg.gpu_coretypes else "names none of the candidate coretypes"
        gpu_hint = "" if not req.wants_gpus or any(c.code in cfg.gpu_coretypes for c in candidates) else (
            f"; translate.gpu_coretypes {gpu_map}: the coretype list has no GPU count, so the agent's "
            "config must give GPUs per core of each GPU coretype, e.g. translate: {gpu_coretypes: "
            "{gpu-ampere: 0.125}}")
        raise TranslateError(f"{what} the request: {_describe(req)}{gpu_hint}{price_hint}")
    return sorted(shapes, key=_rank)


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
    fallbacks: int = 0,
    same_cores: bool = False,
) -> TranslationResult:
    """Pick the hardware and build the POST /api/v2/jobs/ body for a parsed script.

    `keep_outputs` is staging.keep_outputs_on_rescale (which outputs stay on Rescale once packed);
    `fallbacks` how many next cheapest coretypes to keep for capacity failover (failover.fallbacks),
    with `same_cores` only those whose shape has the first choice's core count (failover.same_cores)."""
    req = parsed.request
    tier = choose_tier(parsed, cfg.priority_tiers)
    ranked = ranked_hardware(req, catalogue, cfg, tier)
    choice = ranked[0]
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

    def body_for(shape: Choice) -> dict[str, Any]:
        sched_env = scheduler_environment(
            req, scheduler.env, slots=shape.slots, cores_per_slot=shape.cores_per_slot,
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
                "coreType": shape.coretype.code,
                "coresPerSlot": shape.cores_per_slot,
                "slots": shape.slots,
                "walltime": hours,
            },
            "inputFiles": [_input_file(item) for item in input_file_ids],
            "envVars": {**req.environment, **(env or {})},
        }
        return {"name": name, "billingPriorityValue": TIERS[tier].billing_priority, "jobanalyses": [analysis]}

    spare = [c for c in ranked[1:] if c.cores_per_slot * c.slots <= cfg.max_cores_per_job
             and (not same_cores or c.cores_per_slot * c.slots == cores)][:fallbacks]
    return TranslationResult(
        body=body_for(choice),
        coretype=choice.coretype.code,
        cores_per_slot=choice.cores_per_slot,
        slots=choice.slots,
        walltime_hours=hours,
        estimated_price_per_hour=choice.price_per_hour,
        analysis=(code, version),
        warnings=tuple(sorted((*parsed.warnings, *warnings), key=lambda w: w.line or 0)),
        tier=tier,
        price_per_core_hour=choice.price_per_core_hour,
        fallbacks=tuple(Hardware(c.coretype.code, c.cores_per_slot, c.slots, c.price_per_core_hour,
                                 body_for(c)) for c in spare),
    )
