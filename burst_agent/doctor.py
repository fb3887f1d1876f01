"""`burst-agent doctor`: the operator's checklist, a table of (name, check); all effects go through Host."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from burst_agent import doctor_ha, doctor_sizing
from burst_agent.config import (
    DEFAULT_CONFIG,
    LICENSE_NAME,
    ApiConfig,
    Config,
    ConfigError,
    env_override_paths,
    load_config,
)
from burst_agent.doctorkit import (
    COMMAND_TIMEOUT_S,
    Check,
    Context,
    Host,
    Result,
    Status,
    burst_partitions,
    failed,
    first_line,
    ok,
    skipped,
    warning,
)
from burst_agent.doctorkit import (
    Completed as Completed,  # re-exported: callers and tests name doctor.Completed
)
from burst_agent.model import CatalogueError, Coretype
from burst_agent.pgurl import PostgresUrl
from burst_agent.rescale.errors import (
    AuthenticationError,
    RateLimitedError,
    RescaleError,
    ServerError,
    TransientError,
)
from burst_agent.secret import Token, TokenError, TokenSource, load_token
from burst_agent.spool import DIR_MODES
from burst_agent.textable import render

METRICS_TIMEOUT_S = 3.0
SLURM_UP_STATES = frozenset({"idle", "mixed", "allocated", "completing", "planned"})
# The plugin's default BURST_AGENT and the relay's default --spool: what an unset setting means.
LUA_BURST_AGENT_DEFAULT = "/opt/burst-agent/venv/bin/burst-agent"
RELAY_SPOOL_DEFAULT = Path("/var/spool/burst-agent")
GPU_EXAMPLE = "translate: {gpu_coretypes: {CODE: 0.125}} for one GPU per 8 cores"
TOKEN_FIX = (
    "put the token in a root-owned 0600 file and set LoadCredential={cred}:<file> in the unit, or set "
    "api.token_file; outside systemd $CREDENTIALS_DIRECTORY is unset, so run doctor with api.token_file set"
)


# -- token lookup, shared with `config check` -----------------------------------------------------------


@dataclass(frozen=True)
class TokenLookup:
    """The token (or None) and where it was found, or why not; never the token's text."""

    token: Token | None
    where: str = ""
    error: str = ""
    kind: Literal["credential", "file", "env", ""] = ""
    fix: str = ""

    def describe(self) -> str:
        if self.token is not None:
            return f"found in {self.where}"
        return f"not found: {self.error}" + (f"; run: {self.fix}" if self.fix else "")


def find_token(api: ApiConfig, environ: Mapping[str, str]) -> TokenLookup:
    """load_token() with the config's sources, plus where the token came from (same lookup order)."""
    source = TokenSource(api.token_credential, api.token_file, api.token_env)
    try:
        token = load_token(source, dict(environ))
    except TokenError as exc:
        return TokenLookup(None, error=exc.problem, fix=exc.fix)
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    credential = Path(cred_dir) / source.credential_name if cred_dir else None
    if credential is not None and credential.is_file():
        return TokenLookup(token, f"systemd credential {credential}", kind="credential")
    if source.file is not None:
        mode = stat.S_IMODE(source.file.stat().st_mode)
        return TokenLookup(token, f"file {source.file} (mode {mode:04o})", kind="file")
    return TokenLookup(token, f"environment variable {source.env_var}", kind="env")


# -- the checks -------------------------------------------------------------------------------------------


def check_config(ctx: Context) -> Result:
    path = ctx.config_path
    try:
        ctx.config = load_config(path, ctx.host.environ)
    except ConfigError as exc:
        return failed(str(exc), f"fix the key named, then: burst-agent config check {path or 'FILE'}")
    overrides = env_override_paths(ctx.host.environ)
    env = f"; environment overrides: {', '.join(overrides.values())}" if overrides else ""
    if path is None:
        return warning(
            f"no config file: built-in defaults{env}",
            f"create {DEFAULT_CONFIG} from config/burst-agent.example.yaml, or pass --config FILE",
        )
    return ok(f"{path} is valid{env}")


def check_token(ctx: Context) -> Result:
    if ctx.config is None:
        return skipped("no valid config")
    api = ctx.config.api
    lookup = find_token(api, ctx.host.environ)
    ctx.token = lookup.token
    if lookup.token is None:
        return failed(lookup.error, lookup.fix or TOKEN_FIX.format(cred=api.token_credential))
    if lookup.kind == "env":
        return warning(
            f"found in {lookup.where}",
            f"the environment of a service is readable through systemctl show and /proc: prefer "
            f"LoadCredential={api.token_credential}:<file> (or api.token_file, mode 0600)",
        )
    return ok(f"found in {lookup.where}")


# Most specific first: (error class, HTTP status or None for any, status, detail prefix, fix).
API_FAILURES: tuple[tuple[type[RescaleError], int | None, Status, str, str], ...] = (
    (AuthenticationError, 401, "failed", "token rejected",
     "the token is wrong, expired or revoked: create an API key in Rescale (Settings > API) and store it"),
    (AuthenticationError, None, "failed", "token lacks permission",
     "the key's user needs access to the API (ask your Rescale admin)"),
    (RateLimitedError, None, "warning", "rate limited (the API answered)",
     "another client uses the same key heavily; try again later"),
    (ServerError, None, "failed", "server error", "Rescale (or the proxy in between) failed: retry later"),
    (TransientError, None, "failed", "unreachable",
     "check api.platform / api.base_url, DNS, the proxy (HTTPS_PROXY) and the firewall"),
)
API_OTHER = ("failed", "unexpected answer", "check that api.base_url points at the Rescale API")


def _api_failure(exc: RescaleError, url: str) -> Result:
    matches = (row[2:] for row in API_FAILURES if isinstance(exc, row[0]) and row[1] in (None, exc.status))
    outcome, what, fix = next(matches, API_OTHER)
    return Result(outcome, f"{url}: {what}: {' '.join(str(exc).split())}", fix)


def check_api(ctx: Context) -> Result:
    if ctx.config is None or ctx.token is None:
        return skipped("no config or no token")
    url = ctx.config.api.url
    try:
        with ctx.host.make_client(ctx.config.api, ctx.token) as client:
            ctx.coretypes = client.list_coretypes()
    except RescaleError as exc:
        return _api_failure(exc, url)
    except ValueError as exc:  # the client refuses a malformed base URL
        return failed(f"{url}: {exc}", "fix api.base_url")
    return ok(f"{url}: authenticated (GET /api/v2/coretypes/)")


def _pinned_coretypes(config: Config) -> dict[str, str]:
    """Key path -> coretype code, for every coretype a job can be pinned to."""
    t = config.translate
    named = {} if t.coretype == "auto" else {"translate.coretype": t.coretype}
    named.update({f"translate.rules[{i}].coretype": r.coretype for i, r in enumerate(t.rules)})
    return named


def _catalogue(coretypes: list[dict[str, Any]]) -> dict[str, Coretype]:
    """Code -> coretype of the API's list; CatalogueError if an entry is malformed."""
    return {ct.code: ct for ct in map(Coretype.from_api, coretypes)}


def check_catalogue(ctx: Context) -> Result:
    if ctx.config is None or ctx.coretypes is None:
        return skipped("the API check did not pass")
    try:
        catalogue = _catalogue(ctx.coretypes)
    except CatalogueError as exc:
        return failed(f"malformed catalogue: {exc}", "check api.base_url points at the Rescale API")
    if not catalogue:
        return failed("the catalogue is empty", "the key's user can see no coretypes: ask your Rescale admin")
    detail = f"{len(catalogue)} coretypes, {sum(ct.is_deprecated for ct in catalogue.values())} deprecated"
    # translate refuses a job pinned to an unknown or deprecated coretype: that is a failure here too.
    pinned = _pinned_coretypes(ctx.config)
    unusable = [f"{key} {code!r} ({'deprecated' if code in catalogue else 'unknown'})"
                for key, code in pinned.items() if code not in catalogue or catalogue[code].is_deprecated]
    if unusable:
        return failed(f"{detail}; unusable: {', '.join(unusable)}",
                      "use a current code that `burst-agent coretypes` lists")
    return ok(detail)


def check_gpu_coretypes(ctx: Context) -> Result:
    """The catalogue has no GPU count per coretype: without translate.gpu_coretypes every GPU job fails."""
    if ctx.config is None:
        return skipped("no valid config")
    from burst_agent.translate import is_gpu_coretype

    configured = ctx.config.translate.gpu_coretypes
    catalogue = None
    if ctx.coretypes is not None:
        try:
            catalogue = _catalogue(ctx.coretypes)
        except CatalogueError:
            catalogue = None  # the catalogue check reports it
    if not configured:
        looks = sorted(c for c, ct in (catalogue or {}).items()
                       if not ct.is_deprecated and is_gpu_coretype(ct, ctx.config.translate))
        seen = f"; GPU coretypes in the catalogue: {', '.join(looks)}" if looks else ""
        return warning(f"translate.gpu_coretypes is empty: every GPU job is refused (the coretype list has "
                       f"no GPU count; the site's config must give it){seen}",
                       f"set GPUs per core of each GPU coretype in {ctx.config_path or 'the config'}: "
                       f"{GPU_EXAMPLE} (config/burst-agent.example.yaml; codes: burst-agent coretypes)")
    stray = [code for code in configured if catalogue is not None and code not in catalogue]
    if stray:
        return warning(f"translate.gpu_coretypes names coretypes not in the catalogue: {', '.join(stray)}",
                       "remove them or fix the codes (burst-agent coretypes lists them)")
    return ok(f"{len(configured)} GPU coretype(s): {', '.join(configured)}")


def check_spool(ctx: Context) -> Result:
    if ctx.config is None:
        return skipped("no valid config")
    root = ctx.config.agent.spool_dir
    if not root.is_dir():
        return failed(f"{root} does not exist",
                      f"install -d -o burst-agent -g burst-agent -m 0755 {root} (the unit's ReadWritePaths "
                      "needs it); the agent creates the subdirectories")
    missing, wrong, unwritable = [], [], []
    for sub, mode in DIR_MODES.items():
        path = root / sub
        try:
            actual = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:
            missing.append(sub)
            continue
        if actual != mode:
            wrong.append((path, actual, mode))
        elif not os.access(path, os.W_OK | os.X_OK):
            unwritable.append(sub)
    if wrong:
        return failed(", ".join(f"{p.name} is {a:04o}, expected {m:04o}" for p, a, m in wrong),
                      "; ".join(f"chmod {m:04o} {p}" for p, _, m in wrong))
    if unwritable:
        return failed(f"not writable by uid {os.geteuid()}: {', '.join(unwritable)}",
                      f"run doctor as the agent's user, or: chown -R burst-agent:burst-agent {root}")
    if missing:
        return warning(f"{root}: missing {', '.join(missing)}", "the agent creates them at start")
    return ok(f"{root}: layout and modes as expected, writable")


def check_hardlinks(ctx: Context) -> Result:
    """The spool's owner check relies on it: without it a user may hard-link any file into an entry."""
    value = ctx.host.read_sysctl("fs.protected_hardlinks")
    if value == "1":
        return ok("fs.protected_hardlinks=1: users can hard-link only files they own or may write")
    return failed(f"fs.protected_hardlinks is {value or 'unreadable'}: a user could pass off another "
                  "user's file as a job of that user",
                  "sysctl -w fs.protected_hardlinks=1 and keep it in /etc/sysctl.d/ (Debian's default)")


def _probe_db(path: Path) -> Result:
    from burst_agent.store import MIGRATIONS

    # Run as root, SQLite gives the -wal/-shm files it creates the database file's owner.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=2, isolation_level=None)
    try:
        journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock, changes nothing
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    if version > len(MIGRATIONS):
        return failed(f"{path}: schema v{version} is newer than this burst-agent (v{len(MIGRATIONS)})",
                      "upgrade burst-agent")
    if journal != "wal":
        return warning(f"{path}: journal mode {journal}, not WAL",
                       "the agent switches it to WAL when it opens it")
    return ok(f"{path}: WAL, schema v{version}, writable")


def _probe_postgres(url: PostgresUrl) -> Result:
    from burst_agent.pgstore import probe
    from burst_agent.store import StoreError

    try:
        found = probe(url)
    except StoreError as exc:
        return failed(str(exc), "check the URL, that the server runs, its pg_hba.conf and the role's "
                      "passfile (docs/ha.md)")
    if found.schema_version > found.newest:
        return failed(f"{url}: schema v{found.schema_version} is newer than this burst-agent "
                      f"(v{found.newest})", "upgrade burst-agent")
    if not found.writable:
        what = "write the tables" if found.schema_version else "create tables in its schema"
        return failed(f"{url}: PostgreSQL {found.server}: the role may not {what}",
                      "grant it, or have the database owned by the agent's role (docs/ha.md)")
    if url.password:
        return warning(f"{url}: reachable, but the URL holds a password",
                       "move it to a passfile (mode 0600) named by ?passfile=... (docs/ha.md)")
    schema = f"schema v{found.schema_version}" if found.schema_version else \
        "no schema yet (the agent creates it at start)"
    return ok(f"{url}: PostgreSQL {found.server}, {schema}, writable")


def check_state_db(ctx: Context) -> Result:
    if ctx.config is None:
        return skipped("no valid config")
    path = ctx.config.agent.state_db
    if isinstance(path, PostgresUrl):
        result = _probe_postgres(path)
        ctx.state_reachable = result.status != "failed"
        return result
    if not path.exists():
        parent = path.parent
        if not parent.exists():
            return warning(f"{path} absent, and so is {parent}",
                           f"the unit's StateDirectory= creates {parent} at start; without systemd: "
                           f"install -d -o burst-agent -g burst-agent -m 0750 {parent}")
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return ok(f"{path} absent; the agent creates it at start")
        return failed(f"{path} absent and {parent} is not a writable directory",
                      f"chown burst-agent:burst-agent {parent}, or run doctor as the agent's user")
    try:
        return _probe_db(path)
    except sqlite3.Error as exc:
        return failed(f"{path}: {exc}",
                      "run doctor as the agent's user; keep the state DB on a local filesystem")


def check_metrics(ctx: Context) -> Result:
    if ctx.config is None:
        return skipped("no valid config")
    m = ctx.config.metrics
    if not m.enabled:
        return ok("disabled (metrics.enabled: false)")
    if m.listen_port == 0:
        return ok("listen_port 0: the agent picks a free port at start")
    host = f"[{m.listen_host}]" if ":" in m.listen_host else m.listen_host
    where = f"{host}:{m.listen_port}"
    error = ctx.host.bind_error(m.listen_host, m.listen_port)
    if error is None:
        return ok(f"{where} is free")
    if error.errno != errno.EADDRINUSE:
        return failed(f"cannot listen on {where}: {error.strerror or error}",
                      "metrics.listen_host must be an address of this host")
    try:
        text = ctx.host.http_get(f"http://{where}/metrics", METRICS_TIMEOUT_S)
    except Exception:  # any failure to read it means it is not our endpoint
        text = ""
    found = re.search(r'^burst_agent_build_info\{[^}]*version="([^"]*)"', text, re.MULTILINE)
    if found:
        return ok(f"{where} is served by a running burst-agent {found.group(1)}")
    return failed(f"{where} is in use by another program",
                  f"change metrics.listen_port, or find the program: ss -ltnp 'sport = :{m.listen_port}'")


# -- Slurm ------------------------------------------------------------------------------------------------


def _lua_path(ctx: Context) -> Path:
    """slurmctld reads job_submit.lua from the directory of slurm.conf."""
    conf = (ctx.slurm_config or {}).get("SLURM_CONF", "/etc/slurm/slurm.conf")
    return Path(conf).parent / "job_submit.lua"


def check_slurm_plugin(ctx: Context) -> Result:
    done = ctx.host.run(["scontrol", "show", "config"], COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        return failed(f"scontrol show config: {first_line(done.stderr)}",
                      "is slurmctld running? systemctl status slurmctld")
    pairs = (line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    ctx.slurm_config = {k.strip(): v.strip() for k, v in pairs}
    plugins = ctx.slurm_config.get("JobSubmitPlugins", "(null)")
    if any(p.strip().endswith("lua") for p in plugins.split(",")):
        return ok(f"JobSubmitPlugins = {plugins}")
    return failed(f"JobSubmitPlugins = {plugins}: lua is not among them",
                  "add JobSubmitPlugins=lua to slurm.conf (deploy/slurm/slurm.conf.snippet), "
                  "then restart slurmctld")


LUA_SETTING = re.compile(r'^local\s+([A-Z_]+)\s*=\s*(?:"([^"]*)"|(nil)\b|(true|false)\b)', re.MULTILINE)


def lua_settings(text: str) -> dict[str, str | None]:
    """The plugin's `local NAME = "value"`, `= true`/`= false` and `= nil` settings (nil: None)."""
    return {name: None if nil else value or flag for name, value, nil, flag in LUA_SETTING.findall(text)}


def check_slurm_lua(ctx: Context) -> Result:
    path = _lua_path(ctx)
    install = f"install -m 0644 deploy/slurm/job_submit.lua {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return failed(f"{path}: {getattr(exc, 'strerror', None) or exc}", install)
    if "burst-agent" not in text:
        return failed(f"{path} is not burst-agent's plugin", f"merge it with burst-agent's: {install}")
    ctx.lua_path = path
    ctx.lua_settings = lua_settings(text)
    return ok(f"{path}: burst-agent plugin, partitions {','.join(burst_partitions(ctx))}")


def check_slurm_partition(ctx: Context) -> Result:
    states = []
    for name in burst_partitions(ctx):
        done = ctx.host.run(["scontrol", "show", "partition", name], COMMAND_TIMEOUT_S)
        if done.returncode != 0:
            return failed(f"partition {name}: {first_line(done.stderr)}",
                          "add the PartitionName line of deploy/slurm/slurm.conf.snippet, "
                          "then scontrol reconfigure")
        found = re.search(r"\bState=(\S+)", done.stdout)
        states.append((name, found.group(1) if found else "unknown"))
    down = [f"{name} State={state}" for name, state in states if state != "UP"]
    if down:
        fix = "; ".join(f"scontrol update PartitionName={n} State=UP" for n, s in states if s != "UP")
        return failed(", ".join(down), fix)
    return ok(", ".join(f"{name} State=UP" for name, _ in states))


def check_slurm_nodes(ctx: Context) -> Result:
    rows = []
    for name in burst_partitions(ctx):
        done = ctx.host.run(["sinfo", "-p", name, "-h", "-o", "%T"], COMMAND_TIMEOUT_S)
        if done.returncode != 0:
            return failed(f"sinfo -p {name}: {first_line(done.stderr)}", "is slurmctld running?")
        rows += done.stdout.split()
    up = [s for s in rows if s in SLURM_UP_STATES]
    fix = "check slurmd on the proxy nodes (sinfo -R), then scontrol update NodeName=<node> State=RESUME"
    if not rows:
        return failed("no proxy nodes in the partition", "add the proxy NodeName line (slurm.conf.snippet)")
    if not up:
        return failed(f"no proxy node is up: {', '.join(rows)}", fix)
    if len(up) < len(rows):
        return warning(f"{len(up)} of {len(rows)} proxy nodes up: {', '.join(rows)}", fix)
    return ok(f"{len(rows)} proxy node(s) up: {', '.join(rows)}")


def check_slurm_relay(ctx: Context) -> Result:
    if ctx.lua_settings is None:
        return skipped("job_submit.lua not readable")
    path = Path(ctx.lua_settings.get("BURST_AGENT") or LUA_BURST_AGENT_DEFAULT)
    problem = ctx.host.others_cannot_run(path)
    if problem is None:
        return ok(f"{path} is executable by every user")
    why, fix = problem
    return failed(f"{path} (BURST_AGENT in job_submit.lua) {why}; the relay runs it as the job's user",
                  fix or f"install burst-agent so that {path} exists on every proxy node (docs/slurm.md, "
                  f"\"Set up by hand\"), or set BURST_AGENT in {ctx.lua_path or 'job_submit.lua'}")


def check_slurm_spool(ctx: Context) -> Result:
    """The relay hands jobs to the plugin's SPOOL_DIR; the agent reads agent.spool_dir: they must agree."""
    if ctx.config is None or ctx.lua_settings is None:
        return skipped("no valid config or job_submit.lua not readable")
    setting = ctx.lua_settings.get("SPOOL_DIR")
    relay = Path(os.path.normpath(setting)) if setting else RELAY_SPOOL_DEFAULT
    agent = Path(os.path.normpath(ctx.config.agent.spool_dir))
    said = f'"{setting}"' if setting else f"nil (the relay's default {RELAY_SPOOL_DEFAULT})"
    if relay == agent:
        return ok(f"job_submit.lua SPOOL_DIR {said} is agent.spool_dir")
    return failed(f"job_submit.lua SPOOL_DIR is {said} but agent.spool_dir is {agent}: relays would hand "
                  "jobs to a spool the agent does not read",
                  f'set local SPOOL_DIR = "{agent}" in {ctx.lua_path or "job_submit.lua"}, '
                  f"or agent.spool_dir: {relay} in {ctx.config_path or 'the config'}")


def no_slurm(ctx: Context) -> Result:
    return ok("skipped: no Slurm on this host (no scontrol in PATH)")


# In order: later checks read what earlier ones left in the Context.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("config", check_config),
    ("token", check_token),
    ("api", check_api),
    ("catalogue", check_catalogue),
    ("gpu coretypes", check_gpu_coretypes),
    ("spool", check_spool),
    ("hard links", check_hardlinks),
    ("state db", check_state_db),
    ("metrics", check_metrics),
)
# -- doctor: agent.max_cloud_cores against Slurm's license total ---------------------------------------

_LICENSE = re.compile(r"LicenseName=(\S+)\s+Total=(\d+)")


def license_totals(scontrol_output: str) -> dict[str, int]:
    """{name: Total} from `scontrol show licenses` (one or two lines per license)."""
    return {name: int(total) for name, total in _LICENSE.findall(scontrol_output)}


def compare_cap(cap: int | None, total: int | None, name: str = LICENSE_NAME) -> tuple[Status, str, str]:
    """(status, detail, fix): the agent's exact cap against Slurm's admission estimate."""
    setting = "agent.max_cloud_cores"
    if total is None:
        if cap is None:
            return ("warning", f"no {name} license in Slurm and {setting} unset: nothing caps cloud cores",
                    f"set {setting} (and Licenses={name}:N in slurm.conf, see docs/slurm.md)")
        return "ok", f"{setting} = {cap}; no {name} license in Slurm (the agent's cap alone holds)", ""
    if cap is None:
        return ("warning", f"Slurm's {name} total is {total} (tasks x cpus, an estimate), {setting} is"
                f" unset: jobs rounded up by memory or GPUs can provision more than {total} cores",
                f"set {setting}: {total}")
    if cap == total:
        return "ok", f"{setting} = Slurm's {name} total = {total}", ""
    effect = ("jobs Slurm admits may wait in the agent (RUNNING in squeue, 'waiting for cloud cores' in"
              " their output)" if cap < total else "Slurm's estimate binds first, the agent's cap only"
              " past it")
    return "warning", f"{setting} = {cap}, Slurm's {name} total = {total}: {effect}", \
        f"set {setting}: {total}, or the license to {cap}"


def check_core_cap(ctx: Context) -> Result:
    """`scontrol show licenses` against agent.max_cloud_cores (the agent's cap is exact in provisioned
    cores; Slurm's license is an admission estimate from tasks x cpus)."""
    if ctx.config is None:
        return skipped("no valid config")
    done = ctx.host.run(["scontrol", "show", "licenses"], COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        return skipped(f"scontrol show licenses: {first_line(done.stderr, 'did not run')}")
    name = (ctx.lua_settings or {}).get("LICENSE_NAME", LICENSE_NAME)
    status, detail, fix = compare_cap(ctx.config.agent.max_cloud_cores,
                                      license_totals(done.stdout).get(name), name)
    return Result(status, detail, fix)


SLURM_CHECKS: tuple[tuple[str, Check], ...] = (
    ("slurm plugin", check_slurm_plugin),
    ("slurm job_submit.lua", check_slurm_lua),
    ("slurm partition", check_slurm_partition),
    ("slurm nodes", check_slurm_nodes),
    ("slurm relay", check_slurm_relay),
    ("slurm spool", check_slurm_spool),
    ("slurm core cap", check_core_cap),
    *doctor_sizing.SLURM_CHECKS,
)


def checks_for(host: Host) -> tuple[tuple[str, Check], ...]:
    slurm = SLURM_CHECKS if host.which("scontrol") else (("slurm", no_slurm),)
    return CHECKS + doctor_ha.CHECKS + slurm + doctor_ha.SLURM_CHECKS


def run_checks(ctx: Context) -> list[tuple[str, Result]]:
    """Every check in order; one that crashes is reported as failed and the rest still run."""
    results = []
    for name, check in checks_for(ctx.host):
        try:
            result = check(ctx)
        except Exception as exc:  # a broken check must not hide the others
            result = failed(f"check crashed: {type(exc).__name__}: {exc}", "report this as a burst-agent bug")
        results.append((name, result))
    return results


def render_report(results: Sequence[tuple[str, Result]]) -> str:
    """CHECK  RESULT  DETAIL table; a FIX line, aligned with DETAIL, under each warning or failure."""
    lines = render(("CHECK", "RESULT", "DETAIL"), [(n, r.status, r.detail) for n, r in results]).splitlines()
    indent = " " * lines[0].index("DETAIL")
    out = [lines[0]]
    for line, (_, result) in zip(lines[1:], results, strict=True):
        out.append(line)
        if result.status != "ok" and result.fix:
            out.append(f"{indent}FIX: {result.fix}")
    return "\n".join(out)


def exit_code(results: Sequence[tuple[str, Result]]) -> int:
    return 1 if any(r.status == "failed" for _, r in results) else 0
