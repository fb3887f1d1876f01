"""Slurm `#SBATCH` directives: the option table (data) and the few actions that read values."""

from __future__ import annotations

import re

from burst_agent.dialects.common import SHARED_ACTIONS, Action, Raw, apply, array_spec, parse_count
from burst_agent.dialects.prologue import Directive
from burst_agent.dialects.units import BLANKS, parse_slurm_memory, parse_slurm_time, shown
from burst_agent.request import TranslateError

PREFIX = re.compile(r"#SBATCH(?=\s|$)")

REQUIRED, NONE, OPTIONAL = "required", "none", "optional"  # OPTIONAL: a value only with `=`

_MAIL = "mail is not sent for cloud jobs"
_PLACEMENT = "node placement does not apply on Rescale"
_SCHEDULING = "handled by the on-site scheduler, not on Rescale"

# long name: (short letter, arity, action, argument). Actions are in _ACTIONS below.
OPTIONS: dict[str, tuple[str | None, str, str, str]] = {
    "nodes": ("N", REQUIRED, "nodes", "nodes"),
    "ntasks": ("n", REQUIRED, "count", "ntasks"),
    "ntasks-per-node": (None, REQUIRED, "count", "ntasks_per_node"),
    "tasks-per-node": (None, REQUIRED, "count", "ntasks_per_node"),
    "cpus-per-task": ("c", REQUIRED, "count", "cpus_per_task"),
    "exclusive": (None, OPTIONAL, "flag", "exclusive"),
    "mem": (None, REQUIRED, "memory", "mem_per_node_mb"),
    "mem-per-cpu": (None, REQUIRED, "memory", "mem_per_cpu_mb"),
    "mem-per-gpu": (None, REQUIRED, "memory", "mem_per_gpu_mb"),
    "time": ("t", REQUIRED, "time", "walltime_seconds"),
    "gres": (None, REQUIRED, "gres", "gpus_per_node"),
    "gpus": ("G", REQUIRED, "gpus", "gpus_total"),
    "gpus-per-node": (None, REQUIRED, "gpus", "gpus_per_node"),
    "gpus-per-task": (None, REQUIRED, "gpus", "gpus_per_task"),
    "job-name": ("J", REQUIRED, "text", "job_name"),
    "account": ("A", REQUIRED, "text", "account"),
    "partition": ("p", REQUIRED, "text", "partition"),
    "constraint": ("C", REQUIRED, "text", "constraint"),
    "output": ("o", REQUIRED, "text", "stdout"),
    "error": ("e", REQUIRED, "text", "stderr"),
    "chdir": ("D", REQUIRED, "text", "workdir"),
    "array": ("a", REQUIRED, "array", "array"),
    "export": (None, REQUIRED, "export", "environment"),
    "mail-type": (None, REQUIRED, "warn", _MAIL),
    "mail-user": (None, REQUIRED, "warn", _MAIL),
    "dependency": ("d", REQUIRED, "warn", "dependencies are " + _SCHEDULING),
    "nodelist": ("w", REQUIRED, "warn", "host lists: " + _PLACEMENT),
    "exclude": ("x", REQUIRED, "warn", "host lists: " + _PLACEMENT),
    "nodefile": ("F", REQUIRED, "warn", "host lists: " + _PLACEMENT),
    "qos": ("q", REQUIRED, "text", "qos"),
    "reservation": (None, REQUIRED, "warn", "reservations are " + _SCHEDULING),
    "begin": ("b", REQUIRED, "warn", "start times are " + _SCHEDULING),
    "deadline": (None, REQUIRED, "warn", "deadlines are " + _SCHEDULING),
    "licenses": ("L", REQUIRED, "warn", "licenses are " + _SCHEDULING),
    "priority": (None, REQUIRED, "warn", "priority is " + _SCHEDULING),
    "nice": (None, OPTIONAL, "warn", "priority is " + _SCHEDULING),
    "hold": ("H", NONE, "warn", "holds are " + _SCHEDULING),
    "clusters": ("M", REQUIRED, "warn", "cluster selection is " + _SCHEDULING),
    "comment": (None, REQUIRED, "warn", "comments are not sent to Rescale"),
    "wckey": (None, REQUIRED, "warn", "wckeys are " + _SCHEDULING),
    "requeue": (None, NONE, "warn", "cloud jobs are never requeued"),
    "no-requeue": (None, NONE, "ignore", ""),
    "open-mode": (None, REQUIRED, "warn", "output files are written when the job ends"),
    "input": ("i", REQUIRED, "warn", "standard input is not connected on Rescale"),
    "signal": (None, REQUIRED, "warn", "signals before the time limit are not sent on Rescale"),
    "distribution": ("m", REQUIRED, "warn", "task distribution: " + _PLACEMENT),
    "hint": (None, REQUIRED, "warn", "hints: " + _PLACEMENT),
    "cpu-bind": (None, REQUIRED, "warn", "binding: " + _PLACEMENT),
    "mem-bind": (None, REQUIRED, "warn", "binding: " + _PLACEMENT),
    "gpu-bind": (None, REQUIRED, "warn", "binding: " + _PLACEMENT),
    "ntasks-per-core": (None, REQUIRED, "warn", "per-core layout: " + _PLACEMENT),
    "ntasks-per-socket": (None, REQUIRED, "warn", "per-socket layout: " + _PLACEMENT),
    "ntasks-per-gpu": (None, REQUIRED, "warn", "per-GPU layout: " + _PLACEMENT),
    "cpus-per-gpu": (None, REQUIRED, "warn", "CPUs per GPU is not mapped; request CPUs per task"),
    "sockets-per-node": (None, REQUIRED, "warn", "socket layout: " + _PLACEMENT),
    "cores-per-socket": (None, REQUIRED, "warn", "socket layout: " + _PLACEMENT),
    "threads-per-core": (None, REQUIRED, "warn", "thread layout: " + _PLACEMENT),
    "extra-node-info": ("B", REQUIRED, "warn", "socket layout: " + _PLACEMENT),
    "core-spec": ("S", REQUIRED, "warn", "core specialisation: " + _PLACEMENT),
    "mincpus": (None, REQUIRED, "warn", "minimum CPUs per node is not mapped"),
    "tmp": (None, REQUIRED, "warn", "local disk size is not mapped"),
    "switches": (None, REQUIRED, "warn", "switch layout: " + _PLACEMENT),
    "contiguous": (None, NONE, "warn", "contiguous nodes: " + _PLACEMENT),
    "overcommit": ("O", NONE, "warn", "overcommit is not mapped"),
    "oversubscribe": ("s", NONE, "ignore", ""),
    "no-kill": ("k", OPTIONAL, "ignore", ""),
    "time-min": (None, REQUIRED, "ignore", ""),
    "wait": ("W", NONE, "ignore", ""),
    "parsable": (None, NONE, "ignore", ""),
    "quiet": ("Q", NONE, "ignore", ""),
    "verbose": ("v", NONE, "ignore", ""),
    "get-user-env": (None, OPTIONAL, "warn", "the submit host's login environment is not copied"),
    "export-file": (None, REQUIRED, "warn", "export files are not read; use --export=VAR=value"),
    "propagate": (None, OPTIONAL, "warn", "resource limits are not propagated"),
    "uid": (None, REQUIRED, "warn", "jobs run as the submitting user"),
    "gid": (None, REQUIRED, "warn", "jobs run as the submitting user"),
}
SHORT: dict[str, str] = {spec[0]: name for name, spec in OPTIONS.items() if spec[0]}

_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?", re.ASCII)


def _nodes(raw: Raw, key: str, value: str, d: Directive) -> None:
    match = _RANGE.fullmatch(value.strip(BLANKS))
    if not match:
        raise TranslateError(f"nodes must be a count or a range MIN-MAX, got {shown(value)}")
    low = parse_count(match.group(1), "nodes")
    if match.group(2) is not None and parse_count(match.group(2), "nodes") < low:
        raise TranslateError(f"node range {value!r} is empty")
    raw.set(key, low, d)


def _count(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, parse_count(value, key.replace("_", "-")), d)


def _memory(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, parse_slurm_memory(value), d)


def _time(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, parse_slurm_time(value), d)


def _gpu_count(value: str, *, count_optional: bool) -> tuple[str | None, int]:
    """`[TYPE:]COUNT` -> (type, count); for --gres the count may be left out (one GPU)."""
    head, _, tail = value.rpartition(":")
    if tail.isascii() and tail.isdigit():
        return head or None, parse_count(tail, "GPU count", minimum=0)
    if count_optional and ":" not in value:
        return value or None, 1
    raise TranslateError(f"GPU request must be [TYPE:]COUNT, got {shown(value)}")


def _set_gpus(raw: Raw, key: str, value: str, d: Directive, *, count_optional: bool) -> None:
    gpu_type, count = _gpu_count(value.strip(BLANKS), count_optional=count_optional)
    if gpu_type:
        raw.warn(d, f"GPU type {gpu_type!r} is not used for selection; use translate.rules to pin it")
    raw.set(key, count, d)


def _gpus(raw: Raw, key: str, value: str, d: Directive) -> None:
    _set_gpus(raw, key, value, d, count_optional=False)


def _gres(raw: Raw, key: str, value: str, d: Directive) -> None:
    for item in value.split(","):
        name, _, rest = item.strip().partition(":")
        if name != "gpu":
            raw.warn(d, f"generic resource {item.strip()!r} is not mapped")
            continue
        _set_gpus(raw, key, rest, d, count_optional=True)


def _array(raw: Raw, key: str, value: str, d: Directive) -> None:
    raw.set(key, array_spec(value, "0-15, 1,3,5 or 0-15:2%4"), d)


_ACTIONS: dict[str, Action] = {
    **SHARED_ACTIONS, "nodes": _nodes, "count": _count, "memory": _memory, "time": _time, "gres": _gres,
    "gpus": _gpus, "array": _array,
}


def _apply(raw: Raw, name: str, value: str, d: Directive) -> None:
    _short, _arity, action, argument = OPTIONS[name]
    apply(_ACTIONS[action], raw, argument, value, d)


def _take_value(words: list[str], d: Directive, option: str) -> str:
    if not words:
        raise TranslateError(f"option {option} needs a value", line=d.line, directive=d.text)
    return words.pop(0)


def parse(directives: list[Directive], raw: Raw) -> None:
    """Read every #SBATCH line into `raw` (repeated options: the last one wins)."""
    for d in directives:
        words = list(d.words)
        while words:
            word = words.pop(0)
            if word.startswith("--") and len(word) > 2:
                name, eq, value = word[2:].partition("=")
                if name not in OPTIONS:
                    raw.warn(d, f"ignored: unknown option --{name}")
                    continue
                arity = OPTIONS[name][1]
                if arity == REQUIRED and not eq:
                    value = _take_value(words, d, f"--{name}")
                _apply(raw, name, value, d)
            elif word.startswith("-") and len(word) > 1:
                name = SHORT.get(word[1], "")
                if not name:
                    raw.warn(d, f"ignored: unknown option -{word[1]}")
                    continue
                arity = OPTIONS[name][1]
                value = word[2:]
                if arity == REQUIRED and not value:
                    value = _take_value(words, d, f"-{word[1]}")
                elif arity != REQUIRED and value:
                    words.insert(0, "-" + value)  # bundled flags: -Qv
                    value = ""
                _apply(raw, name, value, d)
            else:
                raw.warn(d, f"ignored: unexpected argument {word!r}")
