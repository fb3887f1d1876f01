"""The scheduler's merged request (the request file): its keys, their checks, and how it wins."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from burst_agent.dialects.common import GPU_KEYS, MEMORY_KEYS, Raw
from burst_agent.dialects.registry import CARRIED_NAMES
from burst_agent.dialects.units import shown
from burst_agent.request import Location, TranslateError

REQUEST_FILE = Location(None, "request file")


def _int_field(minimum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise TranslateError(f"{key} must be an integer of at least {minimum}, got {shown(value)}",
                                 directive="request file")
        return value

    return check


def _str_field(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TranslateError(f"{key} must be a string, got {shown(value)}", directive="request file")
    return value


def _bool_field(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TranslateError(f"{key} must be true or false, got {shown(value)}", directive="request file")
    return value


def _env_field(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TranslateError(f"{key} must be a mapping of strings to strings", directive="request file")
    return dict(value)


_SCHEDULER_VALUE_MAX = 4096


def _scheduler_env_field(key: str, value: Any) -> dict[str, str]:
    """The real job's scheduler variables: only names a dialect carries, short strings without NUL."""
    env = _env_field(key, value)
    unknown = sorted(name for name in env if name not in CARRIED_NAMES)
    if unknown:
        raise TranslateError(f"{key}: {shown(unknown[0])} is not a scheduler variable the agent carries",
                             directive="request file")
    bad = next((n for n, v in env.items() if "\x00" in v or len(v) > _SCHEDULER_VALUE_MAX), None)
    if bad is not None:
        raise TranslateError(f"{key}: {bad} must be at most {_SCHEDULER_VALUE_MAX} characters without NUL",
                             directive="request file")
    return env


def _time_field(key: str, value: Any) -> int | None:
    if isinstance(value, str) and value.upper() in ("UNLIMITED", "INFINITE"):
        return None
    return _int_field(1)(key, value) * 60


# Request-file key -> (raw key, validator). The schema is documented in docs/translation.md.
REQUEST_FILE_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "nodes": ("nodes", _int_field(1)),
    "ntasks": ("ntasks", _int_field(1)),
    "ntasks_per_node": ("ntasks_per_node", _int_field(1)),
    "cpus_per_task": ("cpus_per_task", _int_field(1)),
    "mem_per_node_mb": ("mem_per_node_mb", _int_field(0)),
    "mem_per_cpu_mb": ("mem_per_cpu_mb", _int_field(1)),
    "mem_per_gpu_mb": ("mem_per_gpu_mb", _int_field(1)),
    "gpus_per_node": ("gpus_per_node", _int_field(0)),
    "gpus_per_task": ("gpus_per_task", _int_field(0)),
    "gpus": ("gpus_total", _int_field(0)),
    "time_limit_minutes": ("walltime_seconds", _time_field),
    "exclusive": ("exclusive", _bool_field),
    "job_name": ("job_name", _str_field),
    "account": ("account", _str_field),
    "partition": ("partition", _str_field),
    "qos": ("qos", _str_field),
    "constraint": ("constraint", _str_field),
    "workdir": ("workdir", _str_field),
    "stdout": ("stdout", _str_field),
    "stderr": ("stderr", _str_field),
    "array_task_id": ("array_task_id", _int_field(0)),
    "job_id": ("job_id", _str_field),
    "environment": ("environment", _env_field),
    "scheduler_env": ("scheduler_env", _scheduler_env_field),
}


def apply_overrides(raw: Raw, overrides: Mapping[str, Any]) -> None:
    """The scheduler's merged request wins over the script's text, key by key (null = unset)."""
    if not isinstance(overrides, Mapping):
        raise TranslateError("the request must be a JSON object", directive="request file")
    unknown = sorted(k for k in overrides if k not in REQUEST_FILE_KEYS)
    if unknown:
        raise TranslateError(f"unknown key(s): {', '.join(map(str, unknown))}", directive="request file")
    given = {
        REQUEST_FILE_KEYS[k][0]: REQUEST_FILE_KEYS[k][1](k, v) for k, v in overrides.items() if v is not None
    }
    # Memory and GPU forms exclude each other: a form from the scheduler replaces the script's form.
    for group in (MEMORY_KEYS, GPU_KEYS):
        if any(k in given for k in group):
            for key in group:
                raw.values.pop(key, None)
                raw.where.pop(key, None)
    for key, value in given.items():
        if key == "environment":
            value = {**raw.get("environment", {}), **value}
        raw.set(key, value, REQUEST_FILE)
