"""doctor's checks for agents beyond one host: MUNGE for TCP relays, the lease's holder, the agent's Slurm."""

from __future__ import annotations

import shlex
from pathlib import Path

from burst_agent import mungeauth
from burst_agent.doctorkit import (
    COMMAND_TIMEOUT_S,
    Check,
    Context,
    Host,
    Result,
    failed,
    first_line,
    ok,
    skipped,
    warning,
)
from burst_agent.pgurl import PostgresUrl
from burst_agent.store import StoreError

AGENT_UNIT = "burst-agent.service"
DEFAULT_SLURM_CONF = "/etc/slurm/slurm.conf"
MUNGED_FIX = ("start munged with the site's munge.key (the same on this host and every proxy node): "
              "systemctl enable --now munge; then `munge -n | unmunge` here and "
              "`munge -n | ssh PROXY unmunge` must say STATUS: Success")
SLURM_CONF_FIX = (f"give the agent the cluster's slurm.conf: systemctl edit {AGENT_UNIT}, [Service] "
                  "Environment=SLURM_CONF=/path/to/slurm.conf (Ansible: burst_agent_slurm_conf); "
                  "docs/slurm.md")


def check_relay_tcp(ctx: Context) -> Result:
    """With agent.relay_tcp_listen on, the agent decodes every request's credential with unmunge."""
    if ctx.config is None:
        return skipped("no valid config")
    listen = ctx.config.agent.relay_tcp_listen
    if not listen:
        return ok("off (agent.relay_tcp_listen unset): relays reach the agent through agent.sock")
    missing = [name for name in ("munge", "unmunge") if ctx.host.which(name) is None]
    if missing:
        return failed(f"agent.relay_tcp_listen is {listen}, but {' and '.join(missing)} is not in PATH",
                      "install the munge package (apt-get install munge) here and on every proxy node; "
                      "then " + MUNGED_FIX)
    payload = mungeauth.payload_for("doctor", b"round trip")
    try:
        credential = mungeauth.encode(payload, runner=ctx.host.munge, timeout=COMMAND_TIMEOUT_S)
        decoded = mungeauth.decode(credential, runner=ctx.host.munge, timeout=COMMAND_TIMEOUT_S)
    except mungeauth.MungeError as exc:
        return failed(f"{listen}: {exc.strerror}", MUNGED_FIX)
    if decoded.status or decoded.payload != payload.encode():
        why = mungeauth.STATUS.get(decoded.status, ("", f"munge error {decoded.status}"))[1] \
            if decoded.status else "it returned another payload"
        return failed(f"{listen}: unmunge refused a credential munge made here: {why}", MUNGED_FIX)
    return ok(f"{listen}: munge and unmunge in PATH, munged answers (a credential made and decoded here)")


def check_leader(ctx: Context) -> Result:
    """On PostgreSQL: which agent holds the lease (agent.agent_name:pid), its epoch and what is left."""
    if ctx.config is None:
        return skipped("no valid config")
    url = ctx.config.agent.state_db
    if not isinstance(url, PostgresUrl):
        return ok("no lease: SQLite state, one agent (active/standby needs a postgresql:// agent.state_db)")
    if not ctx.state_reachable:
        return skipped("the state database was not reached")
    try:
        view = ctx.host.read_lease(url)
    except StoreError as exc:
        return failed(url.redact(str(exc)), "see the state db check; docs/ha.md")
    if view is None:
        return ok("no lease row yet (schema before v8): the agent adds it when it starts")
    if not view.holder:
        return ok("nobody has led yet: the first agent to start takes the lease")
    name, _, pid = view.holder.rpartition(":")
    mine = ", this host's agent.agent_name" if name == (ctx.config.agent.agent_name or ctx.host.hostname()) \
        else ""
    who = f"agent {name or view.holder} (pid {pid}{mine})"
    if view.held:
        return ok(f"{who} leads: epoch {view.epoch}, lease {view.left_s:.1f} s left")
    return warning(f"nobody leads: the lease of {who}, epoch {view.epoch}, ended {-view.left_s:.1f} s ago",
                   f"start the agents (systemctl start {AGENT_UNIT} on each agent host); if they run, their "
                   "logs say why none leads (`stepping down`, the database)")


def _unit_environment(host: Host) -> dict[str, str] | None:
    """The Environment= of the agent's unit, None when systemd does not know the unit (or no systemd)."""
    if host.which("systemctl") is None:
        return None
    done = host.run(["systemctl", "show", "--property=LoadState,Environment", AGENT_UNIT], COMMAND_TIMEOUT_S)
    props = dict(line.partition("=")[::2] for line in done.stdout.splitlines())
    if done.returncode != 0 or props.get("LoadState") != "loaded":
        return None
    try:
        return dict(item.partition("=")[::2] for item in shlex.split(props.get("Environment", "")))
    except ValueError:
        return None


def agent_slurm_conf(host: Host) -> tuple[str, str]:
    """The slurm.conf the agent's squeue reads, and why: its unit's SLURM_CONF when systemd knows the
    unit (a service does not inherit this shell's), else this environment's, else Slurm's default."""
    unit = _unit_environment(host)
    if unit is not None:
        if unit.get("SLURM_CONF"):
            return unit["SLURM_CONF"], f"SLURM_CONF of {AGENT_UNIT}"
        return DEFAULT_SLURM_CONF, f"the default: {AGENT_UNIT} sets no SLURM_CONF"
    if host.environ.get("SLURM_CONF"):
        return host.environ["SLURM_CONF"], f"SLURM_CONF of this environment (no {AGENT_UNIT} in systemd)"
    return DEFAULT_SLURM_CONF, "the default: SLURM_CONF unset"


def check_slurm_cluster(ctx: Context) -> Result:
    """The orphan check asks `squeue` whether a silent relay's job still exists: it must ask this cluster."""
    if ctx.config is None:
        return skipped("no valid config")
    blind = (f"the orphan check cannot ask Slurm about a silent relay's job, and stops its remote job after "
             f"{10 * ctx.config.agent.relay_grace_s:g} s (10 x agent.relay_grace_s) even if Slurm only "
             "requeued it")
    if ctx.host.which("scontrol") is None or ctx.host.which("squeue") is None:
        return warning(f"no scontrol or squeue in PATH: {blind}",
                       "on a Slurm site, install Slurm's client commands and the cluster's slurm.conf here; "
                       "with PBS alone, ignore this")
    conf, source = agent_slurm_conf(ctx.host)
    if not Path(conf).is_file():  # scontrol would retry a missing file for 60 s
        return warning(f"{conf} ({source}) does not exist: {blind}", SLURM_CONF_FIX)
    done = ctx.host.run(["env", f"SLURM_CONF={conf}", "scontrol", "show", "config"], COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        return warning(f"{conf} ({source}): scontrol show config: {first_line(done.stderr)}: {blind}",
                       f"is slurmctld running and reachable from here? else {SLURM_CONF_FIX}")
    pairs = (line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    cluster = {k.strip(): v.strip() for k, v in pairs}.get("ClusterName", "(unnamed)")
    pings = [line.strip() for line in done.stdout.splitlines() if line.startswith("Slurmctld(")]
    detail = f"{conf} ({source}): cluster {cluster}, {'; '.join(pings) or 'no controller answered'}"
    here = (ctx.slurm_config or {}).get("ClusterName")
    if here is not None and here != cluster:
        return warning(f"{detail}; but scontrol in this shell sees cluster {here}: if the relays' jobs are "
                       f"there, the agent's squeue answers `Invalid job id` and the orphan check stops their "
                       f"remote jobs after {ctx.config.agent.relay_grace_s:g} s (agent.relay_grace_s)",
                       SLURM_CONF_FIX)
    if not any(line.endswith("is UP") for line in pings):
        return warning(f"{detail}: {blind}", "start slurmctld, or " + SLURM_CONF_FIX)
    return ok(detail)


# After doctor.CHECKS (the state db check first: it tells check_leader whether the database answered).
CHECKS: tuple[tuple[str, Check], ...] = (
    ("relay tcp", check_relay_tcp),
    ("leader", check_leader),
)
# After the Slurm checks, with or without scontrol here (the agent needs Slurm's word either way).
SLURM_CHECKS: tuple[tuple[str, Check], ...] = (
    ("slurm cluster", check_slurm_cluster),
)
