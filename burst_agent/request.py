"""Scheduler-neutral job request, parse result, warnings and the typed translation error (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _where(filename: str | None, line: int | None, directive: str | None) -> str:
    parts = []
    if filename is not None:
        parts.append(f"{filename}:{line}" if line is not None else filename)
    elif line is not None:
        parts.append(f"line {line}")
    if directive:
        parts.append(directive)
    return ": ".join(parts)


class TranslateError(ValueError):
    """A script cannot become a Rescale job; carries the line and directive that caused it."""

    def __init__(self, message: str, *, line: int | None = None, directive: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.directive = directive

    def render(self, filename: str | None = None) -> str:
        """One line: `FILE:LINE: DIRECTIVE: why` (parts that are unknown are left out)."""
        where = _where(filename, self.line, self.directive)
        return f"{where}: {self.message}" if where else self.message

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class ScriptWarning:
    """Something in the script that was ignored or could not be mapped; the job still runs."""

    line: int | None
    directive: str | None
    message: str

    def render(self, filename: str | None = None) -> str:
        where = _where(filename, self.line, self.directive)
        return f"{where}: warning: {self.message}" if where else f"warning: {self.message}"


@dataclass(frozen=True)
class Location:
    """Where a request field came from: a script line, or the scheduler's request file."""

    line: int | None
    directive: str | None


@dataclass(frozen=True)
class JobRequest:
    """What the job asks for, independent of the scheduler that it was written for.

    `nodes` is None when the script leaves the node count free (the translator then picks the
    cheapest shape). When nodes are fixed, `ntasks_per_node`, `mem_per_node_mb` and
    `gpus_per_node` are resolved per node; otherwise memory and GPUs may stay per cpu, per task
    or per job (`gpus_total`).
    """

    nodes: int | None = None
    ntasks: int = 1
    ntasks_per_node: int | None = None
    cpus_per_task: int = 1
    mem_per_node_mb: int | None = None
    mem_per_cpu_mb: int | None = None
    mem_per_gpu_mb: int | None = None
    whole_node_memory: bool = False
    gpus_per_node: int | None = None
    gpus_per_task: int | None = None
    gpus_total: int | None = None
    walltime_seconds: int | None = None
    walltime_unlimited: bool = False
    exclusive: bool = False
    omp_threads: int | None = None
    job_name: str | None = None
    account: str | None = None
    partition: str | None = None
    qos: str | None = None  # Slurm QOS: may choose the priority tier (tiers.py)
    constraint: str | None = None
    workdir: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    join_output: bool = False  # PBS -j oe/eo: both streams go to one file
    array: str | None = None
    array_task_id: int | None = None
    job_id: str | None = None
    shell: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    # The scheduler's own variables as the real job had them (Dialect.env.carried).
    scheduler_env: dict[str, str] = field(default_factory=dict)

    @property
    def wants_gpus(self) -> bool:
        return bool(self.gpus_per_node or self.gpus_per_task or self.gpus_total)


@dataclass(frozen=True)
class ParsedScript:
    """The result of parsing one batch script."""

    scheduler: str
    request: JobRequest
    warnings: tuple[ScriptWarning, ...] = ()
    modules: tuple[str, ...] = ()
    interpreter: tuple[str, ...] = ("/bin/bash",)
    sources: dict[str, Location] = field(default_factory=dict)
    text: str = ""

    def location(self, key: str) -> Location:
        return self.sources.get(key, Location(None, None))


def as_plain(value: Any) -> Any:
    """Dataclass-free copy for JSON output of a request (used by tools and tests)."""
    if isinstance(value, JobRequest):
        return {k: as_plain(v) for k, v in value.__dict__.items()}
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    return value
