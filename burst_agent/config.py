"""YAML -> validated, frozen config; every error names the key path and what was expected."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

import yaml

from burst_agent.pgurl import PostgresUrl, is_postgres_url
from burst_agent.relayaddr import AddressError, parse_address
from burst_agent.tiers import TIERS, price_source

ENV_PREFIX = "BURST_AGENT__"
PLATFORMS: dict[str, str] = {
    "us": "https://platform.rescale.com",
    "eu": "https://eu.rescale.com",
    "jp": "https://platform.rescale.jp",
}
# Read when no --config is given, if it exists (else the built-in defaults).
DEFAULT_CONFIG = Path("/etc/burst-agent/config.yaml")
# The Slurm license job_submit.lua charges per job (its LICENSE_NAME): Slurm's estimate of the cloud
# cores that agent.max_cloud_cores caps.
LICENSE_NAME = "rescale_cores"


class ConfigError(ValueError):
    """The config file is unreadable or invalid; the message names the file and key path."""


StateLocation = PostgresUrl | Path  # agent.state_db: a SQLite file or a PostgreSQL URL
_INT_LIMIT = 2**63 - 1  # SQLite's INTEGER; no setting needs more, and float() and str() stay safe
_OVERSIZED = _INT_LIMIT + 1  # what the loader makes of a longer integer, so _convert names its key
_DECIMAL = re.compile(r"[-+]?[0-9_]+", re.ASCII)


def _show(value: Any, quote: bool = True) -> str:
    """A value (repr) or key (str) for a message, cut to 100 characters."""
    try:
        text = repr(value) if quote else str(value)
    except ValueError:  # an int past sys.get_int_max_str_digits(), perhaps inside a list
        return "an integer too large to print"
    return text if len(text) <= 100 else text[:100] + "..."


class _Loader(yaml.SafeLoader):
    """SafeLoader whose constructors' Python errors (`2001-13-45`, `!!int abc`) are marked YAML errors."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, LookupError, AttributeError, TypeError, OverflowError) as exc:
            value = _show(node.value) if isinstance(node, yaml.ScalarNode) else "the value"
            problem = f"cannot read {value} as {node.tag.rpartition(':')[2]}: {_reason(exc)}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from exc


def _reason(exc: Exception) -> str:
    return str(exc).partition(";")[0]  # int()'s limit message ends in advice for programmers


def _parse_yaml(text: str) -> Any:
    """YAML through _Loader; the scanner's Python errors (`"\\U0011FFFF"`, a long `%YAML`) are YAML errors."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except (ValueError, OverflowError) as exc:
        problem = f"cannot read: {_reason(exc)}"
        raise yaml.scanner.ScannerError(None, None, problem, loader.get_mark()) from exc
    finally:
        loader.dispose()


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    try:
        value = loader.construct_yaml_int(node)
    except ValueError:
        if not _DECIMAL.fullmatch(node.value):
            raise
        return _OVERSIZED  # int() refuses more than 4300 decimal digits
    return value if -_INT_LIMIT <= value <= _INT_LIMIT else _OVERSIZED


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _range(lo: float | None = None, hi: float | None = None, **kw: Any) -> Any:
    return field(metadata={"min": lo, "max": hi}, **kw)


@dataclass(frozen=True)
class RateLimits:
    """Client-side token buckets per Rescale throttle scope: hard limits per hour (Rescale's, where it
    publishes them) and bursts; the agent spends at most `target_fraction` of each limit."""

    job_submission_per_hour: float = _range(0.001, None, default=1000.0)
    jobs_usage_per_hour: float = _range(0.001, None, default=90000.0)
    user_per_hour: float = _range(0.001, None, default=7200.0)
    # Unpublished by Rescale: today's conservative figure (the old "other" budget).
    file_access_per_hour: float = _range(0.001, None, default=7200.0)
    billing_per_hour: float = _range(0.001, None, default=7200.0)
    job_submission_burst: float = _range(1, None, default=50.0)
    jobs_usage_burst: float = _range(1, None, default=300.0)
    user_burst: float = _range(1, None, default=150.0)
    file_access_burst: float = _range(1, None, default=150.0)
    billing_burst: float = _range(1, None, default=150.0)
    target_fraction: float = _range(0.01, 1.0, default=0.85)
    enabled: bool = True
    # Older names, still read: old key -> new key.
    ALIASES: ClassVar[dict[str, str]] = {"job_reads_per_hour": "jobs_usage_per_hour",
                                         "other_per_hour": "user_per_hour"}


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
class PriorityTiersConfig:
    """Which Rescale priority tier a job runs in and is priced at (tiers.py; docs/accounting.md)."""

    default: str = "on-demand-priority"
    by_qos: dict[str, str] = field(default_factory=dict)  # Slurm QOS -> tier
    # The tiers a job's own `#BURST --priority TIER` line may choose; empty: the line is refused.
    user_choices: tuple[str, ...] = ()
    # tier -> the GET /billing/computeprices/ planType it is priced from (instead of the coretype list)
    plan_prices: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        key = "translate.priority_tiers"
        for tier, plan in self.plan_prices.items():
            _check_tier(tier, f"{key}.plan_prices.{tier}", plan_prices=None)
            if not plan.strip():
                raise ConfigError(f"{key}.plan_prices.{tier}: name a planType, not an empty string")
        used = [(self.default, f"{key}.default"), *((t, f"{key}.by_qos.{q}") for q, t in self.by_qos.items()),
                *((t, f"{key}.user_choices[{i}]") for i, t in enumerate(self.user_choices))]
        for tier, path in used:
            _check_tier(tier, path, self.plan_prices)


def _check_tier(tier: str, path: str, plan_prices: dict[str, str] | None) -> None:
    """A known tier, and (unless plan_prices is None) one that has a price to estimate with."""
    if tier not in TIERS:
        raise ConfigError(f"{path}: unknown tier {_show(tier)}; expected one of {', '.join(TIERS)}")
    if plan_prices is not None and price_source(tier, plan_prices) is None:
        raise ConfigError(f"{path}: tier {tier} has no price in the coretype list; name the GET "
                          f"/billing/computeprices/ planType it is billed at in translate.priority_tiers"
                          f".plan_prices.{tier}")


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
    priority_tiers: PriorityTiersConfig = field(default_factory=PriorityTiersConfig)


@dataclass(frozen=True)
class StagingConfig:
    """What travels to Rescale and back."""

    max_input_bytes: int = _range(0, None, default=50 * 1024**3)
    max_input_files: int = _range(1, None, default=100_000)
    large_file_bytes: int = _range(1, None, default=64 * 1024**2)
    download_concurrency: int = _range(1, 64, default=8)
    # A file this size or larger comes over range_connections parallel Range GETs where a HEAD says
    # the server takes ranges for it (1: always one stream).
    range_connections: int = _range(1, 16, default=8)
    range_min_bytes: int = _range(1, None, default=64 * 1024**2)
    free_space_margin_bytes: int = _range(0, None, default=256 * 1024**2)
    pull_outputs_on_cancel: bool = True
    # The remote command packs a job's outputs into one archive; "all" also leaves every output file
    # on Rescale (browsable there), "archive" only the archive (and what was not packed).
    keep_outputs_on_rescale: Literal["all", "archive"] = "all"


@dataclass(frozen=True)
class AgentConfig:
    """The daemon: where it keeps its spool and state, and how often it acts."""

    spool_dir: Path = Path("/var/spool/burst-agent")
    # A SQLite file (the embedded default), or a postgresql:// URL (see docs/ha.md).
    state_db: StateLocation = Path("/var/lib/burst-agent/state.db")
    cluster_name: str = "cluster"
    poll_interval_s: float = _range(5, 3600, default=5.0)
    intake_interval_s: float = _range(0.1, 60, default=1.0)
    workers: int = _range(1, 64, default=4)
    stop_grace_s: float = _range(0, 86400, default=120.0)
    # Live logs: the tail cycle's period; each executing job is tailed again after min_interval while
    # its log grows, after doubling intervals up to max_interval while silent; tails spend at most
    # budget_share of the jobs-usage scope's target rate.
    log_tail_interval_s: float = _range(1, 3600, default=10.0)
    log_tail_min_interval_s: float = _range(1, 3600, default=25.0)
    log_tail_max_interval_s: float = _range(1, 86400, default=1800.0)
    log_tail_budget_share: float = _range(0.001, 1.0, default=0.25)
    # ... and, with many jobs executing, at most this many tails per executing job per minute on
    # average (a fleet's cold start stays cheap; a few printing jobs are never held back by it).
    log_tail_calls_per_job_per_min: float = _range(0.01, 60, default=0.25)
    # Protected mode (every create/submit failing): one held job is tried this often (takes a restart).
    protected_mode_probe_s: float = _range(1, 3600, default=60.0)
    # A relay silent this long is checked against the scheduler; a vanished job is stopped remotely.
    relay_grace_s: float = _range(10, 86400, default=120.0)
    # agent.sock: open connections per uid and in all (over the cap: a `busy` answer), time per request.
    relay_max_connections_per_user: int = _range(1, 4096, default=16)
    relay_max_connections: int = _range(1, 65536, default=256)
    relay_request_timeout_s: float = _range(0.1, 3600, default=10.0)
    # Relays on other nodes (docs/slurm.md): "HOST:PORT" to listen on TCP, MUNGE-authenticated; "": off.
    # The caps above hold there too (per uid once munged vouched for it); before that, per peer host.
    relay_tcp_listen: str = ""
    relay_tcp_max_connections_per_host: int = _range(1, 65536, default=64)
    relay_credential_max_age_s: float = _range(1, 3600, default=60.0)
    # Finished relay jobs' copies in the spool (logs/, undelivered results/) are deleted after this; 0 keeps.
    spool_retention_days: float = _range(0, 3650, default=14.0)
    # Cores provisioned on Rescale (coresPerSlot x slots) by all jobs at once; beyond it jobs wait. None: off.
    max_cloud_cores: int | None = _range(1, None, default=None)
    # Slurm account / PBS project -> Rescale project id
    projects: dict[str, str] = field(default_factory=dict)
    organization: str | None = None  # Rescale organization code; needed to assign projects
    workspace: str | None = None  # Rescale workspace id (e.g. 04-0468913198); needed to read the bill
    # Active/standby over one PostgreSQL state_db (docs/ha.md): the leader's lease lasts leader_lease_s
    # and is renewed every leader_renew_s; the lease names this agent agent_name:pid ("": the hostname).
    leader_lease_s: float = _range(3, 600, default=8.0)
    leader_renew_s: float = _range(0.5, 200, default=2.0)
    agent_name: str = ""

    def __post_init__(self) -> None:
        if self.log_tail_max_interval_s < self.log_tail_min_interval_s:
            raise ConfigError(f"agent.log_tail_max_interval_s: {self.log_tail_max_interval_s:g} is below"
                              f" agent.log_tail_min_interval_s ({self.log_tail_min_interval_s:g})")
        if self.relay_tcp_listen:
            try:
                parse_address(self.relay_tcp_listen, any_port=True)
            except AddressError as exc:
                raise ConfigError(f"agent.relay_tcp_listen: {exc}") from None
        if self.leader_renew_s * 3 > self.leader_lease_s:
            raise ConfigError(f"agent.leader_renew_s: {self.leader_renew_s:g} is over a third of"
                              f" agent.leader_lease_s ({self.leader_lease_s:g})")


@dataclass(frozen=True)
class SpendingConfig:
    """Monthly cloud spend per scheduler account (estimates, in the coretype catalogue's currency)."""

    # account -> its budget for a calendar month (UTC); accounts not named have none.
    monthly_by_account: dict[str, float] = field(default_factory=dict)
    warn_fraction: float = _range(0.01, 1.0, default=0.8)  # the metric's and alert's "nearly spent"
    # At 100 %: "hold" new jobs of the account until the month ends (or the budget is raised), or
    # "refuse" them (they fail with the reason). Running jobs are never stopped for it.
    when_exhausted: Literal["hold", "refuse"] = "hold"
    # Actual cost: read Rescale's project billing CSVs this often (agent.organization and agent.workspace
    # needed); 0: off. Rescale's bill lags the run, so more often buys little.
    billing_reconcile_interval_s: float = _range(0, 86400 * 7, default=3600.0)

    def __post_init__(self) -> None:
        for account, budget in self.monthly_by_account.items():
            if budget < 0:
                raise ConfigError(f"spending.monthly_by_account.{account}: {budget:g} is below 0")
        if 0 < self.billing_reconcile_interval_s < 60:
            raise ConfigError(f"spending.billing_reconcile_interval_s: {self.billing_reconcile_interval_s:g}"
                              " is below 60 (0 turns it off)")


@dataclass(frozen=True)
class FailoverConfig:
    """Capacity failover: a job Rescale cannot place runs again on the next cheapest coretype that fits."""

    fallbacks: int = _range(0, 5, default=2)  # next cheapest coretypes each plan keeps; 0: no failover
    # Only fallbacks with the job's own core count: a charge sized at submission (job_submit.lua
    # SIZE_CHARGE, burst-agent size-charges) then stays exact whichever coretype runs.
    same_cores: bool = False
    # A Completed job that never executed, whose statusReason contains one of these (any case), found
    # no capacity: it is created again on its next coretype.
    reasons: tuple[str, ...] = ("could not allocate compute resources", "insufficient capacity",
                                "no capacity")
    cooldown_after: int = _range(1, 1000, default=3)  # this many capacity failures of a coretype ...
    cooldown_window_s: float = _range(1, 86400, default=1800.0)  # ... within this window ...
    cooldown_s: float = _range(1, 86400, default=3600.0)  # ... skip it for new jobs this long


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
    spending: SpendingConfig = field(default_factory=SpendingConfig)
    failover: FailoverConfig = field(default_factory=FailoverConfig)


# Scalar type -> (accepts the YAML value?, converts it). bool is never an int here, although Python says so.
_SCALARS: dict[Any, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    bool: (lambda v: isinstance(v, bool), bool),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), int),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v), float),
    str: (lambda v: isinstance(v, str), str),
    Path: (lambda v: isinstance(v, str) and bool(v), Path),
    PostgresUrl: (is_postgres_url, PostgresUrl),
}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path",
               PostgresUrl: "a postgresql:// URL"}


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
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT_LIMIT <= value <= _INT_LIMIT:
        raise ConfigError(f"{path}: integer out of range (more than 64 bits)")
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
        raise ConfigError(f"{path}: expected {_describe(tp)}, got {_show(value)}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{path}: expected {_describe(tp)}, got {_show(value)}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        item_tp = get_args(tp)[0]
        return tuple(_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = get_args(tp)
        return {_convert(k, key_tp, path): _convert(v, val_tp, f"{path}.{_show(k, quote=False)}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    check = _SCALARS.get(tp)
    if check is not None and check[0](value):
        return check[1](value)
    raise ConfigError(f"{path}: expected {_describe(tp)}, got {_show(value)}")


def _check_range(value: Any, meta: Mapping[str, Any], path: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(f"{path}: {value:g} is below the minimum {lo:g}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path}: {value:g} is above the maximum {hi:g}")


def _renamed(cls: type, data: Mapping[Any, Any], path: str) -> Mapping[Any, Any]:
    """`data` with a class's older key names (its ALIASES) read as their new names."""
    aliases: dict[str, str] = getattr(cls, "ALIASES", {})
    if not any(old in data for old in aliases):
        return data
    renamed = dict(data)
    for old, new in aliases.items():
        if old in renamed:
            if new in renamed:
                raise ConfigError(f"{path}.{old}: the older name of {new}; give only one of them".lstrip("."))
            renamed[new] = renamed.pop(old)
    return renamed


def _build(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'top level'}: expected a mapping, got {type(data).__name__}")
    data = _renamed(cls, data, path)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{path}.{_show(key, quote=False)}: unknown key".lstrip("."))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}".lstrip(".")
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key_path)
            _check_range(kwargs[name], f.metadata, key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key_path}: required key is missing")
    return cls(**kwargs)


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> Iterator[str]:
    """BURST_AGENT__API__BASE_URL=... sets api.base_url (values are YAML); yields each name once applied."""
    for name in sorted(environ):
        raw = environ[name]
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
            node[keys[-1]] = _parse_yaml(raw)
        except RecursionError as exc:
            raise ConfigError(f"environment {name}: nested too deeply to be a config value") from exc
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", exc)
            raise ConfigError(f"environment {name}: not a YAML value: {problem}") from exc
        yield name


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
            data = _parse_yaml(text) or {}
        except RecursionError as exc:
            raise ConfigError(f"{path}: nested too deeply to be a config") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    config = config_from_mapping(data, source)
    # Checked again after each override, so an error names the variable that caused it.
    for name in _apply_env_overrides(data, os.environ if environ is None else environ):
        config = config_from_mapping(data, f"environment {name}")
    return config


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
    if isinstance(value, Path | PostgresUrl):
        return str(value)  # a URL's password redacted
    return value


def effective_dict(config: Config) -> dict[str, Any]:
    """The config as plain YAML-able data (paths as strings, lists for tuples), every key present."""
    return _plain(config)
