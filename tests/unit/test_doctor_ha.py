"""doctor's multi-host checks (doctor_ha) against fakes: munged, the lease reader, systemctl and scontrol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from burst_agent import doctor_ha
from burst_agent.config import config_from_mapping
from burst_agent.doctor import Completed, Context, Host
from burst_agent.leadership import LeaseView
from burst_agent.store import StoreError

PG = "postgresql://burst:s3cret-pw@db.example:5432/burst"
SHOW_CONFIG = "ClusterName             = burstci\nSLURM_CONF = {conf}\nSlurmctld(primary) at vm is UP\n"


def ctx(agent: dict[str, Any] | None = None, **host: Any) -> Context:
    c = Context(None, Host(environ=host.pop("environ", {}), **host))
    c.config = config_from_mapping({"agent": agent or {}})
    return c


def munged(status: int = 0, make: int = 0):
    """munge/unmunge as munged answers: `make` is munge's exit status, `status` unmunge's."""

    def run(argv: tuple[str, ...], data: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        if argv[0] == "munge":
            return make, b"" if make else b"MUNGE:" + data.hex().encode() + b":", b""
        payload = bytes.fromhex(data.strip()[6:-1].decode())
        meta = b"STATUS: %d\nUID: 0\nGID: 0\nENCODE_TIME: 5\nDECODE_TIME: 5\n\n" % status
        return status, meta + payload, b""

    return run


# -- relay tcp: munge and unmunge ------------------------------------------------------------------------


def test_relay_tcp_off_needs_no_munge():
    result = doctor_ha.check_relay_tcp(ctx(which=lambda name: None))
    assert result.status == "ok" and "agent.relay_tcp_listen unset" in result.detail


def test_relay_tcp_without_unmunge_fails_naming_the_package():
    c = ctx({"relay_tcp_listen": "0.0.0.0:7557"}, which=lambda name: None if name == "unmunge" else "/bin/x")
    result = doctor_ha.check_relay_tcp(c)
    assert result.status == "failed" and "unmunge is not in PATH" in result.detail
    assert "install the munge package" in result.fix


def test_relay_tcp_round_trip_through_munged_is_ok():
    c = ctx({"relay_tcp_listen": "0.0.0.0:7557"}, which=lambda name: "/usr/bin/" + name, munge=munged())
    assert doctor_ha.check_relay_tcp(c) == doctor_ha.ok(
        "0.0.0.0:7557: munge and unmunge in PATH, munged answers (a credential made and decoded here)")


def test_relay_tcp_fails_when_munged_does_not_answer_or_refuses():
    down = ctx({"relay_tcp_listen": "0.0.0.0:7557"}, which=lambda n: "/bin/" + n, munge=munged(make=6))
    result = doctor_ha.check_relay_tcp(down)
    assert result.status == "failed" and "EMUNGE_SOCKET" in result.detail
    assert "systemctl enable --now munge" in result.fix
    refused = ctx({"relay_tcp_listen": "0.0.0.0:7557"}, which=lambda n: "/bin/" + n, munge=munged(status=14))
    assert "another munge.key" in doctor_ha.check_relay_tcp(refused).detail


# -- leader: the lease row ------------------------------------------------------------------------------


def lease_ctx(answer: Any, agent_name: str = "head1") -> Context:
    def read(url: Any) -> LeaseView | None:
        if isinstance(answer, Exception):
            raise answer
        return answer

    c = ctx({"state_db": PG, "agent_name": agent_name}, read_lease=read, hostname=lambda: "vm")
    c.state_reachable = True
    return c


def test_leader_on_sqlite_is_one_agent_without_a_lease():
    result = doctor_ha.check_leader(ctx(read_lease=lambda url: 1 / 0))
    assert result.status == "ok" and result.detail.startswith("no lease: SQLite state")


def test_leader_names_the_holder_its_epoch_and_the_time_left():
    result = doctor_ha.check_leader(lease_ctx(LeaseView("head2:4242", 7, 6.44)))
    assert result == doctor_ha.ok("agent head2 (pid 4242) leads: epoch 7, lease 6.4 s left")
    mine = doctor_ha.check_leader(lease_ctx(LeaseView("head1:99", 3, 2.0)))
    assert "(pid 99, this host's agent.agent_name) leads" in mine.detail


def test_leader_warns_when_the_lease_ran_out_and_is_quiet_before_the_first_agent():
    result = doctor_ha.check_leader(lease_ctx(LeaseView("head2:4242", 7, -31.0)))
    assert result.status == "warning"
    assert result.detail == "nobody leads: the lease of agent head2 (pid 4242), epoch 7, ended 31.0 s ago"
    assert doctor_ha.check_leader(lease_ctx(LeaseView("", 0, -1.0))).status == "ok"
    assert doctor_ha.check_leader(lease_ctx(None)).status == "ok"


def test_leader_never_shows_the_password_and_waits_for_the_state_db_check():
    result = doctor_ha.check_leader(lease_ctx(StoreError("cannot reach postgresql://burst:s3cret-pw@db")))
    assert result.status == "failed" and "s3cret-pw" not in result.detail + result.fix
    unreached = lease_ctx(LeaseView("a:1", 1, 5.0))
    unreached.state_reachable = False
    assert doctor_ha.check_leader(unreached).detail.startswith("skipped")


# -- slurm cluster: the slurm.conf the agent's squeue reads ----------------------------------------------


def slurm_ctx(tmp_path: Path, unit_env: str | None, show: Completed | None = None, **kw: Any) -> Context:
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=burstci\n")
    unit = Completed(0, f"LoadState=loaded\nEnvironment={unit_env}\n") if unit_env is not None else \
        Completed(0, "LoadState=not-found\nEnvironment=\n")
    show = show or Completed(0, SHOW_CONFIG.format(conf=conf))
    answers = {f"systemctl show --property=LoadState,Environment {doctor_ha.AGENT_UNIT}": unit,
               f"env SLURM_CONF={conf} scontrol show config": show}
    return ctx(which=lambda name: "/usr/bin/" + name,
               run=lambda argv, timeout: answers.get(" ".join(argv), Completed(1, "", "unexpected")), **kw)


def test_slurm_cluster_uses_the_units_slurm_conf_and_names_the_cluster(tmp_path: Path):
    c = slurm_ctx(tmp_path, f"PYTHONUNBUFFERED=1 SLURM_CONF={tmp_path}/slurm.conf")
    result = doctor_ha.check_slurm_cluster(c)
    assert result == doctor_ha.ok(f"{tmp_path}/slurm.conf (SLURM_CONF of burst-agent.service): "
                                  "cluster burstci, Slurmctld(primary) at vm is UP")


def test_slurm_cluster_without_a_unit_reads_this_environment(tmp_path: Path):
    c = slurm_ctx(tmp_path, None, environ={"SLURM_CONF": f"{tmp_path}/slurm.conf"})
    assert "SLURM_CONF of this environment" in doctor_ha.check_slurm_cluster(c).detail


def test_slurm_cluster_warns_of_the_default_file_missing_or_another_cluster(tmp_path: Path):
    default = slurm_ctx(tmp_path, "PYTHONUNBUFFERED=1")
    assert doctor_ha.agent_slurm_conf(default.host) == (
        "/etc/slurm/slurm.conf", "the default: burst-agent.service sets no SLURM_CONF")
    missing = doctor_ha.check_slurm_cluster(slurm_ctx(tmp_path, f"SLURM_CONF={tmp_path}/none.conf"))
    assert missing.status == "warning" and f"{tmp_path}/none.conf (SLURM_CONF of" in missing.detail
    other = slurm_ctx(tmp_path, f"SLURM_CONF={tmp_path}/slurm.conf")
    other.slurm_config = {"ClusterName": "multi"}
    result = doctor_ha.check_slurm_cluster(other)
    assert result.status == "warning" and "scontrol in this shell sees cluster multi" in result.detail
    assert "Environment=SLURM_CONF=" in result.fix


def test_slurm_cluster_is_a_warning_when_slurm_is_absent_or_down(tmp_path: Path):
    absent = doctor_ha.check_slurm_cluster(ctx({"relay_grace_s": 60}, which=lambda name: None))
    assert absent.status == "warning" and "stops its remote job after 600 s" in absent.detail
    down = slurm_ctx(tmp_path, f"SLURM_CONF={tmp_path}/slurm.conf",
                     show=Completed(1, "", "slurm_load_ctl_conf error: Unable to contact slurm controller"))
    result = doctor_ha.check_slurm_cluster(down)
    assert result.status == "warning" and "Unable to contact slurm controller" in result.detail
