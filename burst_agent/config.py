"""YAML -> validated, frozen config; every error names the key path and what was expected."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

ENV_PREFIX = "BURST_AGENT__"
PLATFORMS: dict[str, str] = {
    "us": "https://platform.rescale.com",
    "eu": "https://eu.rescale.com",
    "jp": "https://platform.rescale.jp",
}


class ConfigError(ValueError):
    """The config file is unreadable or invalid; the message names the file and key path."""


def _range(lo: float | None = None, hi: float | None = None, **kw: Any) -> Any:
    return field(metadata={"min": lo, "max": hi}, **kw)


@dataclass(frozen=True)
class RateLimits:
    """Client-side token buckets, per hour, defaulting to what Rescale enforces."""

    job_submission_per_hour: float = _range(0.001, None, default=1000.0)
    job_reads_per_hour: float = _range(0.001, None, default=90000.0)
    other_per_hour: float = _range(0.001, None, default=7200.0)
    enabled: bool = True


@dataclass(frozen=True)
class ApiConfig:
    """How to reach Rescale (or the emulator)."""

    platform: Literal["us", "eu", "jp"] = "us"
    base_url: str | None = None  # any URL (emulator, proxy); wins over `platform`
    token_file: Path | None = None
    token_env: str = "RESCALE_API_TOKEN"
    token_credential: str = "rescale-token"
    connect_timeout_s: float = _range(0.1, 300, default=10.0)
    read_timeout_s: float = _range(0.1, 3600, default=60.0)
    max_retries: int = _range(0, 20, default=6)
    backoff_base_s: float = _range(0.0, 60, default=0.5)
    backoff_max_s: float = _range(0.0, 3600, default=60.0)
    rate_limits: RateLimits = field(default_factory=RateLimits)

    @property
    def url(self) -> str:
        return (self.base_url or PLATFORMS[self.platform]).rstrip("/")


@dataclass(frozen=True)
class CoretypeRule:
    """First matching rule picks the coretype. Unset match keys match anything; strings are globs."""

    coretype: str
    partition: str | None = None
    account: str | None = None
    constraint: str | None = None
    gpus: bool | None = None  # True: only jobs that request GPUs; False: only jobs that don't
    min_memory_per_core_mb: float | None = _range(0, None, default=None)
    max_memory_per_core_mb: float | None = _range(0, None, default=None)


@dataclass(frozen=True)
class AnalysisRule:
    """`module load NAME/VERSION` lines matching `module` (a glob) select this analysis."""

    module: str
    code: str
    version: str | None = None  # None: the version from the module line


@dataclass(frozen=True)
class TranslateConfig:
    """How scripts become Rescale jobs (issue: translation)."""

    coretype: str = "auto"
    default_walltime_hours: float = _range(0.01, None, default=1.0)
    max_walltime_hours: float = _range(0.01, None, default=168.0)
    max_cores_per_job: int = _range(1, None, default=100_000)  # coresPerSlot x slots; above: rejected
    gpu_coretypes: dict[str, float] = field(default_factory=dict)
    rules: tuple[CoretypeRule, ...] = ()
    analysis_code: str = "user_included"
    analysis_version: str = "0"
    analyses: tuple[AnalysisRule, ...] = ()


@dataclass(frozen=True)
class StagingConfig:
    """What travels to Rescale and back."""

    max_input_bytes: int = _range(0, None, default=50 * 1024**3)
    max_input_files: int = _range(1, None, default=100_000)
    large_file_bytes: int = _range(1, None, default=64 * 1024**2)
    download_concurrency: int = _range(1, 64, default=8)
    free_space_margin_bytes: int = _range(0, None, default=256 * 1024**2)
    pull_outputs_on_cancel: bool = True


@dataclass(frozen=True)
class AgentConfig:
    """The daemon: where it keeps its spool and state, and how often it acts."""

    spool_dir: Path = Path("/var/spool/burst-agent")
    state_db: Path = Path("/var/lib/burst-agent/state.db")
    cluster_name: str = "cluster"
    poll_interval_s: float = _range(5, 3600, default=30.0)
    intake_interval_s: float = _range(0.1, 60, default=1.0)
    workers: int = _range(1, 64, default=4)
    stop_grace_s: float = _range(0, 86400, default=120.0)
    log_tail_interval_s: float = _range(1, 3600, default=10.0)
    # A relay silent this long is checked against the scheduler; a vanished job is stopped remotely.
    relay_grace_s: float = _range(10, 86400, default=120.0)
    # Finished relay jobs' copies in the spool (logs/, undelivered results/) are deleted after this; 0 keeps.
    spool_retention_days: float = _range(0, 3650, default=14.0)
    # Slurm account / PBS project -> Rescale project id
    projects: dict[str, str] = field(default_factory=dict)
    organization: str | None = None  # Rescale organization code; needed to assign projects


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint: loopback by default; scraping reads the agent's state, never the API."""

    enabled: bool = True
    listen_host: str = "127.0.0.1"
    listen_port: int = _range(0, 65535, default=9464)
    per_user_labels: bool = False  # adds a `user` label to cost and core-seconds (cardinality = users)
    # Partition / queue names that may appear as label values; users can write any name into an entry.
    partitions: tuple[str, ...] = ("rescale",)


@dataclass(frozen=True)
class Config:
    """The whole agent configuration."""

    api: ApiConfig = field(default_factory=ApiConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    staging: StagingConfig = field(default_factory=StagingConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


# Scalar type -> (accepts the YAML value?, converts it). bool is never an int here, although Python says so.
_SCALARS: dict[Any, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    bool: (lambda v: isinstance(v, bool), bool),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), int),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), float),
    str: (lambda v: isinstance(v, str), str),
    Path: (lambda v: isinstance(v, str) and bool(v), Path),
}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path"}


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None)) + " (or null)"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is tuple:
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        item_tp = get_args(tp)[0]
        return tuple(_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = get_args(tp)
        return {_convert(k, key_tp, f"{path}"): _convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    check = _SCALARS.get(tp)
    if check is not None and check[0](value):
        return check[1](value)
    raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")


def _check_range(value: Any, meta: Mapping[str, Any], path: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(f"{path}: {value:g} is below the minimum {lo:g}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path}: {value:g} is above the maximum {hi:g}")


def _build(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'top level'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{path}.{key}: unknown key".lstrip("."))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}".lstrip(".")
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key_path)
            _check_range(kwargs[name], f.metadata, key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key_path}: required key is missing")
    return cls(**kwargs)


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """BURST_AGENT__API__BASE_URL=... sets api.base_url; values are parsed as YAML scalars."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            raise ConfigError(f"environment {name}: names no key (expected {ENV_PREFIX}SECTION__KEY)")
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment {name}: {key} is not a section")
            node = child
        try:
            node[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", exc)
            raise ConfigError(f"environment {name}: not a YAML value: {problem}") from exc
    return data


def config_from_mapping(data: Any, source: str = "<config>") -> Config:
    try:
        return _build(Config, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (or nothing), apply environment overrides, validate."""
    data: Any = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
        try:
            data = yaml.safe_load(text) or {}
        except RecursionError as exc:
            raise ConfigError(f"{path}: nested too deeply to be a config") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    data = _apply_env_overrides(data, os.environ if environ is None else environ)
    return config_from_mapping(data, source)


def env_override_paths(environ: Mapping[str, str]) -> dict[str, str]:
    """The BURST_AGENT__* variables in `environ`, each with the key path it overrides (for reports)."""
    return {
        name: ".".join(k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k)
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX)
    }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def effective_dict(config: Config) -> dict[str, Any]:
    """The config as plain YAML-able data (paths as strings, lists for tuples), every key present."""
    return _plain(config)
