"""Shared by both dialects: raw directive values, the actions both tables use, and count resolution."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from burst_agent.arith import ceil_div
from burst_agent.dialects.prologue import Directive
from burst_agent.dialects.units import BLANKS, MAX_DIGITS, UnitError, shown
from burst_agent.request import JobRequest, Location, ScriptWarning, TranslateError

MEMORY_KEYS = ("mem_per_node_mb", "mem_per_cpu_mb", "mem_per_gpu_mb", "mem_per_job_mb", "mem_per_task_mb")
GPU_KEYS = ("gpus_per_node", "gpus_per_task", "gpus_total")
_COUNT = re.compile(r"[0-9]+", re.ASCII)
_ARRAY = re.compile(r"[0-9]+(-[0-9]+(:[0-9]+)?)?(,[0-9]+(-[0-9]+(:[0-9]+)?)?)*(%[0-9]+)?", re.ASCII)


def parse_count(value: str, what: str, *, minimum: int = 1) -> int:
    """A decimal count of at least `minimum`; anything else is a TranslateError (no location yet)."""
    digits = value.strip(BLANKS)
    if not _COUNT.fullmatch(digits):
        raise TranslateError(f"{what} must be a whole number, got {shown(value)}")
    if len(digits) > MAX_DIGITS:
        raise TranslateError(f"{what} must have at most {MAX_DIGITS} digits, got {shown(value)}")
    number = int(digits)
    if number < minimum:
        raise TranslateError(f"{what} must be at least {minimum}, got {number}")
    return number


def array_spec(value: str, example: str) -> str:
    """A job-array spec (indices, ranges, steps, a `%` limit), each number of at most MAX_DIGITS digits."""
    spec = value.strip(BLANKS)
    if not _ARRAY.fullmatch(spec) or any(len(n) > MAX_DIGITS for n in _COUNT.findall(spec)):
        raise TranslateError(f"array must be like {example}, got {shown(value)}")
    return spec


class Raw:
    """Directive values as given (last one wins), each with the line it came from, plus warnings."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.where: dict[str, Location] = {}
        self.warnings: list[ScriptWarning] = []

    def set(self, key: str, value: Any, where: Directive | Location) -> None:
        self.values[key] = value
        self.where[key] = where if isinstance(where, Location) else Location(where.line, where.text)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def warn(self, where: Directive | Location | None, message: str) -> None:
        if where is None:
            self.warnings.append(ScriptWarning(None, None, message))
        elif isinstance(where, Location):
            self.warnings.append(ScriptWarning(where.line, where.directive, message))
        else:
            self.warnings.append(ScriptWarning(where.line, where.text, message))

    def error(self, keys: tuple[str, ...], message: str) -> TranslateError:
        """An error located at the last-set of `keys` (the line a user would fix)."""
        places = [self.where[k] for k in keys if k in self.where]
        place = max(places, key=lambda p: p.line or 0) if places else Location(None, None)
        return TranslateError(message, line=place.line, directive=place.directive)


# A directive's action: (raw, the table's argument, the directive's value, the directive).
Action = Callable[[Raw, str, str, Directive], None]


def apply(action: Action, raw: Raw, argument: str, value: str, d: Directive) -> None:
    """Run one option's action; what it refuses becomes an error located at the directive."""
    try:
        action(raw, argument, value, d)
    except (TranslateError, UnitError) as exc:
        message = exc.message if isinstance(exc, TranslateError) else str(exc)
        raise TranslateError(message, line=d.line, directive=d.text) from exc


def set_exports(raw: Raw, key: str, value: str, d: Directive) -> None:
    """`ALL`, `NONE` or VAR=value items: values given here are sent; bare names cannot be."""
    env = dict(raw.get("environment", {}))
    for item in (i.strip() for i in value.split(",")):
        name, eq, val = item.partition("=")
        if eq and name:
            env[name] = val
        elif item.upper() not in ("ALL", "NONE", "NIL", ""):
            raw.warn(d, f"{item} is not sent (its value lives on the submit host); give {item}=value")
    raw.set("environment", env, d)


def set_text(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, value, d)


def set_flag(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, True, d)


def warn_ignored(raw: Raw, message: str, value: str, d: Directive) -> None:
    raw.warn(d, f"ignored: {message}")


def ignore(raw: Raw, key: str, value: str, d: Directive) -> None:
    return None


# The actions both dialects' option tables use under these names.
SHARED_ACTIONS: dict[str, Action] = {
    "text": set_text, "flag": set_flag, "export": set_exports, "warn": warn_ignored, "ignore": ignore,
}


def _resolve_counts(raw: Raw) -> tuple[int | None, int, int | None]:
    nodes, ntasks, per_node = raw.get("nodes"), raw.get("ntasks"), raw.get("ntasks_per_node")
    keys = ("nodes", "ntasks", "ntasks_per_node")
    if nodes is not None and ntasks is not None and ntasks < nodes:
        raise raw.error(keys, f"conflicting counts: {ntasks} task(s) cannot fill {nodes} node(s)")
    if nodes is not None and ntasks is not None and per_node is not None:
        if ntasks > nodes * per_node:
            raise raw.error(
                keys, f"conflicting counts: {ntasks} tasks do not fit {nodes} node(s) x {per_node} task(s)"
            )
        return nodes, ntasks, per_node
    if nodes is not None and per_node is not None:
        return nodes, nodes * per_node, per_node
    if nodes is not None and ntasks is not None:
        return nodes, ntasks, ceil_div(ntasks, nodes)
    if ntasks is not None and per_node is not None:
        return ceil_div(ntasks, per_node), ntasks, per_node
    if nodes is not None:
        return nodes, nodes, 1
    if per_node is not None:
        return 1, per_node, per_node
    return None, ntasks or 1, None


def _resolve_memory(raw: Raw, nodes: int | None, ntasks: int, cpus: int) -> dict[str, Any]:
    given = [k for k in MEMORY_KEYS if k in raw.values]
    if len(given) > 1:
        labels = " and ".join(k.removesuffix("_mb").replace("_", " ") for k in given)
        raise raw.error(tuple(given), f"conflicting memory requests: {labels}")
    out: dict[str, Any] = {}
    if not given:
        return out
    key, value = given[0], raw.values[given[0]]
    if key == "mem_per_node_mb" and value == 0:
        raw.warn(raw.where[key], "all the memory of the node: memory is not constrained")
        return {"whole_node_memory": True}
    if key == "mem_per_job_mb":
        if nodes is not None:
            return {"mem_per_node_mb": ceil_div(value, nodes)}
        return {"mem_per_cpu_mb": ceil_div(value, ntasks * cpus)}
    if key == "mem_per_task_mb":
        return {"mem_per_cpu_mb": ceil_div(value, cpus)}
    return {key: value}


def _resolve_gpus(raw: Raw, nodes: int | None, per_node: int | None) -> dict[str, Any]:
    given = {k: raw.values[k] for k in GPU_KEYS if raw.values.get(k)}
    if not given:
        return {}
    if nodes is None or per_node is None:
        if len(given) > 1:
            raise raw.error(tuple(given), "conflicting GPU requests: give GPUs per node, per task or total")
        return given
    per_node_values = {
        "gpus_per_node": given.get("gpus_per_node"),
        "gpus_per_task": per_node * given["gpus_per_task"] if "gpus_per_task" in given else None,
        "gpus_total": ceil_div(given["gpus_total"], nodes) if "gpus_total" in given else None,
    }
    values = {v for v in per_node_values.values() if v is not None}
    if len(values) > 1:
        raise raw.error(tuple(given), "conflicting GPU requests: the forms give different GPUs per node")
    return {**given, "gpus_per_node": values.pop()}


def resolve(raw: Raw, *, omp_from_cpus: bool) -> JobRequest:
    """Derive a consistent JobRequest from whichever counts the script (and request file) gave."""
    nodes, ntasks, per_node = _resolve_counts(raw)
    cpus = raw.get("cpus_per_task") or 1
    memory = _resolve_memory(raw, nodes, ntasks, cpus)
    gpus = _resolve_gpus(raw, nodes, per_node)
    if nodes is not None and per_node is not None:
        if "mem_per_cpu_mb" in memory:
            memory["mem_per_node_mb"] = memory["mem_per_cpu_mb"] * per_node * cpus
        if "mem_per_gpu_mb" in memory and gpus.get("gpus_per_node"):
            memory["mem_per_node_mb"] = memory["mem_per_gpu_mb"] * gpus["gpus_per_node"]
    if "mem_per_gpu_mb" in memory and not gpus:
        raise raw.error(("mem_per_gpu_mb",), "memory per GPU without a GPU request")
    walltime = raw.get("walltime_seconds")
    omp = raw.get("omp_threads")
    if omp is None and (omp_from_cpus or "cpus_per_task" in raw.values):
        omp = cpus
    array_task_id = raw.get("array_task_id")
    array = raw.get("array")
    if array is not None and array_task_id is None:
        first = re.match(r"[0-9]+", array, re.ASCII)
        array_task_id = int(first.group()) if first else 0
        raw.warn(raw.where["array"], f"array job: translated as the single task {array_task_id}")
    return JobRequest(
        nodes=nodes,
        ntasks=ntasks,
        ntasks_per_node=per_node,
        cpus_per_task=cpus,
        mem_per_node_mb=memory.get("mem_per_node_mb"),
        mem_per_cpu_mb=memory.get("mem_per_cpu_mb"),
        mem_per_gpu_mb=memory.get("mem_per_gpu_mb"),
        whole_node_memory=memory.get("whole_node_memory", False),
        gpus_per_node=gpus.get("gpus_per_node"),
        gpus_per_task=gpus.get("gpus_per_task"),
        gpus_total=gpus.get("gpus_total"),
        walltime_seconds=walltime,
        walltime_unlimited="walltime_seconds" in raw.values and walltime is None,
        exclusive=bool(raw.get("exclusive", False)),
        omp_threads=omp,
        job_name=raw.get("job_name"),
        account=raw.get("account"),
        partition=raw.get("partition"),
        qos=raw.get("qos"),
        constraint=raw.get("constraint"),
        workdir=raw.get("workdir"),
        stdout=raw.get("stdout"),
        stderr=raw.get("stderr"),
        join_output=bool(raw.get("join_output", False)),
        array=array,
        array_task_id=array_task_id,
        job_id=raw.get("job_id"),
        shell=raw.get("shell"),
        environment=dict(raw.get("environment", {})),
        scheduler_env=dict(raw.get("scheduler_env", {})),
    )
