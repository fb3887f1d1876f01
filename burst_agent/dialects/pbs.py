"""PBS Pro / OpenPBS / Torque `#PBS` directives: option and resource tables (data) and their actions."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from burst_agent.dialects.common import SHARED_ACTIONS, Action, Raw, apply, array_spec, parse_count
from burst_agent.dialects.prologue import Directive
from burst_agent.dialects.units import parse_pbs_memory, parse_pbs_time
from burst_agent.request import Location, TranslateError

PREFIX = re.compile(r"\s*#PBS(?=\s|$)")

_MAIL = "mail is not sent for cloud jobs"
_SCHEDULING = "handled by the on-site scheduler, not on Rescale"

# option letter: (takes a value, action, argument)
OPTIONS: dict[str, tuple[bool, str, str]] = {
    "l": (True, "resources", ""),
    "N": (True, "text", "job_name"),
    "q": (True, "queue", "partition"),
    "A": (True, "text", "account"),
    "P": (True, "text", "account"),
    "o": (True, "path", "stdout"),
    "e": (True, "path", "stderr"),
    "j": (True, "join", ""),
    "J": (True, "array", "array"),
    "t": (True, "array", "array"),
    "V": (False, "warn", "the submit environment is not copied; give -v VAR=value"),
    "v": (True, "export", ""),
    "S": (True, "shell", "shell"),
    "d": (True, "text", "workdir"),
    "w": (True, "text", "workdir"),
    "n": (False, "flag", "exclusive"),
    "m": (True, "warn", _MAIL),
    "M": (True, "warn", _MAIL),
    "W": (True, "attribute", ""),
    "r": (True, "warn", "cloud jobs are never rerun"),
    "h": (False, "warn", "holds are " + _SCHEDULING),
    "a": (True, "warn", "start times are " + _SCHEDULING),
    "p": (True, "warn", "priority is " + _SCHEDULING),
    "c": (True, "warn", "checkpointing is not mapped"),
    "k": (True, "warn", "output files are returned when the job ends"),
    "u": (True, "warn", "jobs run as the submitting user"),
    "I": (False, "warn", "interactive jobs cannot run on Rescale"),
    "X": (False, "warn", "X11 forwarding is not available"),
    "C": (True, "warn", "the directive prefix cannot change inside the script"),
    "T": (True, "warn", "job prologues are not mapped"),
    "x": (False, "warn", "interactive jobs cannot run on Rescale"),
    "z": (False, "ignore", ""),
    "f": (False, "ignore", ""),
}

# -l resource: (action, argument). Chunk resources of `select` are in CHUNK_RESOURCES.
RESOURCES: dict[str, tuple[str, str]] = {
    "select": ("select", ""),
    "place": ("place", ""),
    "nodes": ("nodes", ""),
    "walltime": ("time", "walltime_seconds"),
    "ncpus": ("count", "_ncpus"),
    "mem": ("memory", "_mem"),
    "ngpus": ("gpu_count", "_ngpus"),
    "procs": ("count", "_procs"),
    "pmem": ("memory", "mem_per_task_mb"),
    "mpiprocs": ("warn", "job-wide mpiprocs is not mapped; put it in the select chunk"),
    "ompthreads": ("warn", "job-wide ompthreads is not mapped; put it in the select chunk"),
    "vmem": ("warn", "virtual memory limits are not mapped"),
    "pvmem": ("warn", "virtual memory limits are not mapped"),
    "cput": ("warn", "CPU time limits are not mapped"),
    "pcput": ("warn", "CPU time limits are not mapped"),
    "software": ("warn", "software resources are not mapped; see translate.analyses"),
    "host": ("warn", "host lists: node placement does not apply on Rescale"),
    "vnode": ("warn", "host lists: node placement does not apply on Rescale"),
    "file": ("warn", "disk size is not mapped"),
}
CHUNK_RESOURCES: dict[str, str] = {"ncpus": "count", "mpiprocs": "count", "ompthreads": "count",
                                   "ngpus": "gpu_count", "mem": "memory"}
_HOST_PATH = re.compile(r"[A-Za-z0-9_.-]+:(?=/)")


@dataclass(frozen=True)
class Chunk:
    """One `select` chunk shape (or one Torque `nodes` part); `count` copies of it."""

    count: int = 1
    ncpus: int | None = None
    mpiprocs: int | None = None
    ompthreads: int | None = None
    ngpus: int | None = None
    mem: int | None = None
    properties: tuple[str, ...] = ()


def _value(kind: str, what: str, value: str) -> int:
    if kind == "memory":
        return parse_pbs_memory(value)
    return parse_count(value, what, minimum=0 if kind == "gpu_count" else 1)


def _select(raw: Raw, text: str, d: Directive) -> list[Chunk]:
    chunks = []
    for part in text.split("+"):
        fields = part.split(":")
        count = 1
        if fields and "=" not in fields[0]:
            count = parse_count(fields.pop(0), "chunk count")
        values: dict[str, int] = {}
        for field in fields:
            name, eq, value = field.partition("=")
            if not eq:
                raise TranslateError(f"select chunk resource must be NAME=VALUE, got {field!r}")
            if name not in CHUNK_RESOURCES:
                raw.warn(d, f"ignored: chunk resource {name} is not mapped")
                continue
            values[name] = _value(CHUNK_RESOURCES[name], name, value)
        chunks.append(Chunk(count=count, **values))
    return chunks


def _nodes(raw: Raw, text: str, d: Directive) -> list[Chunk]:
    chunks = []
    for part in text.split("+"):
        first, *fields = part.split(":")
        if first.isascii() and first.isdigit():
            count = parse_count(first, "nodes")
        elif first:
            raw.warn(d, f"ignored: host {first!r}: node placement does not apply on Rescale")
            count = 1
        else:
            raise TranslateError(f"nodes must be a count or a host name, got {part!r}")
        ppn = gpus = None
        props = []
        for field in fields:
            name, eq, value = field.partition("=")
            if eq and name == "ppn":
                ppn = parse_count(value, "ppn")
            elif eq and name == "gpus":
                gpus = parse_count(value, "gpus", minimum=0)
            elif eq:
                raw.warn(d, f"ignored: node resource {name} is not mapped")
            else:
                props.append(field)
        chunks.append(Chunk(count=count, mpiprocs=ppn, ngpus=gpus, properties=tuple(props)))
    return chunks


def _merge_chunks(chunks: list[Chunk]) -> Chunk:
    shapes = {replace(c, count=1) for c in chunks}
    if len(shapes) > 1:
        raise TranslateError("chunks of different shapes cannot run on one Rescale coretype")
    return replace(chunks[0], count=sum(c.count for c in chunks))


def _resources(raw: Raw, value: str, d: Directive) -> None:
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        name, eq, val = item.partition("=")
        if name not in RESOURCES:
            raw.warn(d, f"ignored: resource {name} is not mapped")
            continue
        action, argument = RESOURCES[name]
        if not eq and action != "warn":
            raise TranslateError(f"resource {name} needs a value")
        if action == "select":
            raw.set("_select", _merge_chunks(_select(raw, val, d)), d)
        elif action == "nodes":
            raw.set("_nodes", _merge_chunks(_nodes(raw, val, d)), d)
        elif action == "place":
            raw.set("_place", val, d)
        elif action == "time":
            raw.set(argument, parse_pbs_time(val), d)
        elif action == "warn":
            raw.warn(d, f"ignored: {argument}")
        else:
            raw.set(argument, _value(action, name, val), d)


def _queue(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, value.partition("@")[0], d)


def _path(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, _HOST_PATH.sub("", value, count=1), d)


def _join(raw: Raw, key: str, value: str, d: Directive) -> None:
    if value not in ("oe", "eo", "n"):
        raise TranslateError(f"join must be oe, eo or n, got {value!r}")
    raw.set("join_output", value != "n", d)


def _array(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, array_spec(value, "1-10, 1,3,5 or 1-10:2%4"), d)


def _shell(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, re.split(r"[@,]", value, maxsplit=1)[0], d)


def _attribute(raw: Raw, key: str, value: str, d: Directive) -> None:
    name = value.partition("=")[0]
    what = "dependencies are " + _SCHEDULING if name == "depend" else f"attribute {name} is not mapped"
    raw.warn(d, f"ignored: {what}")


_ACTIONS: dict[str, Action] = {
    **SHARED_ACTIONS, "resources": lambda raw, _k, v, d: _resources(raw, v, d),
    "queue": _queue, "path": _path, "join": _join, "array": _array, "shell": _shell, "attribute": _attribute,
}


def _apply(raw: Raw, letter: str, value: str, d: Directive) -> None:
    _takes, action, argument = OPTIONS[letter]
    apply(_ACTIONS[action], raw, argument, value, d)


def parse(directives: list[Directive], raw: Raw) -> None:
    """Read every #PBS line into `raw`, then turn chunks and job-wide resources into counts."""
    for d in directives:
        words = list(d.words)
        while words:
            word = words.pop(0)
            letter = word[1:2] if word.startswith("-") else ""
            if letter not in OPTIONS:
                raw.warn(d, f"ignored: unknown option {word!r}")
                continue
            takes_value = OPTIONS[letter][0]
            value = word[2:]
            if takes_value and not value:
                if not words:
                    raise TranslateError(f"option -{letter} needs a value", line=d.line, directive=d.text)
                value = words.pop(0)
            elif not takes_value and value:
                words.insert(0, "-" + value)
                value = ""
            _apply(raw, letter, value, d)
    _finish(raw)


def _conflict(raw: Raw, keys: tuple[str, ...], message: str) -> TranslateError:
    return raw.error(keys, message)


def _finish(raw: Raw) -> None:
    """Chunks (select or Torque nodes) and job-wide ncpus/mem/ngpus/procs become neutral counts."""
    shapes = [k for k in ("_select", "_nodes") if k in raw.values]
    if len(shapes) > 1:
        raise _conflict(raw, tuple(shapes), "both select and nodes are given")
    if shapes:
        for key in ("_ncpus", "_procs"):
            if key in raw.values:
                raise _conflict(raw, (shapes[0], key), f"job-wide {key[1:]} conflicts with the chunk request")
        _chunk_to_counts(raw, shapes[0])
    elif "_ncpus" in raw.values:
        where = raw.where["_ncpus"]
        raw.set("nodes", 1, where)
        raw.set("ntasks", 1, where)
        raw.set("cpus_per_task", raw.values["_ncpus"], where)
    if "_procs" in raw.values:
        if "_ncpus" in raw.values:
            raise _conflict(raw, ("_procs", "_ncpus"), "procs and ncpus are both given")
        raw.set("ntasks", raw.values["_procs"], raw.where["_procs"])
    if "_mem" in raw.values:
        if "mem_per_node_mb" in raw.values:
            raise _conflict(raw, ("_mem", "mem_per_node_mb"), "job-wide mem conflicts with chunk mem")
        raw.set("mem_per_job_mb", raw.values["_mem"], raw.where["_mem"])
    if raw.values.get("_ngpus"):
        if "gpus_per_node" in raw.values:
            raise _conflict(raw, ("_ngpus", "gpus_per_node"), "job-wide ngpus conflicts with chunk ngpus")
        raw.set("gpus_total", raw.values["_ngpus"], raw.where["_ngpus"])


def _chunk_to_counts(raw: Raw, key: str) -> None:
    chunk: Chunk = raw.values[key]
    where: Location = raw.where[key]
    nodes = chunk.count
    procs = chunk.mpiprocs or 1
    ncpus = chunk.ncpus if chunk.ncpus is not None else procs
    if ncpus % procs:
        raw.warn(where, f"{ncpus} cpus do not divide among {procs} processes: rounded up per process")
    cpus = max(1, -(-ncpus // procs))
    if str(raw.get("_place", "")).split(":")[0] == "pack" and nodes > 1:
        procs, nodes = procs * nodes, 1
        chunk = replace(chunk, mem=chunk.mem and chunk.mem * chunk.count,
                        ngpus=chunk.ngpus and chunk.ngpus * chunk.count)
    if "excl" in str(raw.get("_place", "")).split(":"):
        raw.set("exclusive", True, raw.where["_place"])
    raw.set("nodes", nodes, where)
    raw.set("ntasks_per_node", procs, where)
    raw.set("cpus_per_task", cpus, where)
    if chunk.ompthreads is not None:
        raw.set("omp_threads", chunk.ompthreads, where)
    if chunk.mem is not None:
        raw.set("mem_per_node_mb", chunk.mem, where)
    if chunk.ngpus:
        raw.set("gpus_per_node", chunk.ngpus, where)
    if chunk.properties:
        raw.set("constraint", "&".join(chunk.properties), where)
