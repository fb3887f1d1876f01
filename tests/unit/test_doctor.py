"""doctor: each check against fakes (client, commands, port probe) and temp directories."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pgkit
import pytest

from burst_agent import doctor
from burst_agent.config import config_from_mapping
from burst_agent.doctor import Completed, Context, Host
from burst_agent.rescale.errors import AuthenticationError, TransientError
from burst_agent.secret import Token
from burst_agent.spool import Spool
from burst_agent.store import MIGRATIONS, JobStore
from burst_agent.stores import open_store

SECRET = "s3cret-token-value-42"


def ctx(config: dict[str, Any] | None = None, **host: Any) -> Context:
    c = Context(None, Host(environ=host.pop("environ", {}), **host))
    c.config = config_from_mapping(config or {})
    return c


class FakeClient:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def list_coretypes(self) -> list[dict[str, Any]]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def coretype(code: str, deprecated: bool = False) -> dict[str, Any]:
    return {"code": code, "name": code, "cores": [1, 2], "memory": 4000, "price": 0.1,
            "isDeprecated": deprecated}


# -- config and token ----------------------------------------------------------------------------------


def test_invalid_config_fails_naming_file_and_key(tmp_path: Path):
    path = tmp_path / "site.yaml"
    path.write_text("api:\n  max_retries: 99\n")
    c = Context(path, Host(environ={}))
    result = doctor.check_config(c)
    assert result.status == "failed"
    assert f"{path}: api.max_retries" in result.detail
    assert c.config is None
    assert doctor.check_token(c).detail.startswith("skipped")


def test_valid_config_lists_env_overrides(tmp_path: Path):
    path = tmp_path / "site.yaml"
    path.write_text("agent:\n  workers: 2\n")
    c = Context(path, Host(environ={"BURST_AGENT__API__READ_TIMEOUT_S": "5"}))
    result = doctor.check_config(c)
    assert result.status == "ok"
    assert "api.read_timeout_s" in result.detail
    assert c.config is not None and c.config.api.read_timeout_s == 5


def test_no_config_file_is_a_warning():
    result = doctor.check_config(Context(None, Host(environ={})))
    assert result.status == "warning"
    assert "built-in defaults" in result.detail


def test_token_file_with_mode_0600_is_ok(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(SECRET)
    token_file.chmod(0o600)
    c = ctx({"api": {"token_file": str(token_file)}})
    result = doctor.check_token(c)
    assert result == doctor.ok(f"found in file {token_file} (mode 0600)")
    assert c.token == Token(SECRET)


def test_group_readable_token_file_fails_with_chmod(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(SECRET)
    token_file.chmod(0o640)
    result = doctor.check_token(ctx({"api": {"token_file": str(token_file)}}))
    assert result.status == "failed"
    assert result.fix == f"chmod 600 {token_file}"
    assert SECRET not in result.detail + result.fix


def test_token_from_credentials_directory_is_ok(tmp_path: Path):
    (tmp_path / "rescale-token").write_text(SECRET)
    result = doctor.check_token(ctx(environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}))
    assert result == doctor.ok(f"found in systemd credential {tmp_path / 'rescale-token'}")


def test_token_from_environment_is_a_warning():
    result = doctor.check_token(ctx(environ={"RESCALE_API_TOKEN": SECRET}))
    assert result.status == "warning"
    assert "environment variable RESCALE_API_TOKEN" in result.detail
    assert "LoadCredential" in result.fix


def test_no_token_fails():
    result = doctor.check_token(ctx())
    assert result.status == "failed"
    assert "RESCALE_API_TOKEN" in result.detail


# -- API and catalogue ---------------------------------------------------------------------------------


def api_ctx(answer: Any) -> Context:
    c = ctx({"api": {"base_url": "http://127.0.0.1:9"}}, make_client=lambda api, token: FakeClient(answer))
    c.token = Token(SECRET)
    return c


def test_api_401_is_token_rejected():
    result = doctor.check_api(api_ctx(AuthenticationError("unauthorized", status=401, method="GET")))
    assert result.status == "failed"
    assert "token rejected" in result.detail


def test_api_connection_failure_is_unreachable():
    c = api_ctx(TransientError("connection refused", method="GET", path="/api/v2/coretypes/"))
    result = doctor.check_api(c)
    assert result.status == "failed"
    assert result.detail.startswith("http://127.0.0.1:9: unreachable: connection refused")
    assert "api.base_url" in result.fix
    assert c.coretypes is None


def test_api_ok_keeps_the_catalogue_for_the_next_check():
    c = api_ctx([coretype("emerald"), coretype("onyx", deprecated=True)])
    assert doctor.check_api(c).status == "ok"
    assert doctor.check_catalogue(c) == doctor.ok("2 coretypes, 1 deprecated")


def test_catalogue_fails_on_pinned_coretypes_translate_would_refuse():
    c = ctx({"translate": {"coretype": "onyx", "rules": [{"coretype": "nope"}]}})
    c.coretypes = [coretype("emerald"), coretype("onyx", deprecated=True)]
    result = doctor.check_catalogue(c)
    assert result.status == "failed"
    assert result.detail.endswith(
        "unusable: translate.coretype 'onyx' (deprecated), translate.rules[0].coretype 'nope' (unknown)"
    )


def test_gpu_coretypes_unknown_to_the_catalogue_warn():
    c = ctx({"translate": {"gpu_coretypes": {"gpu-x": 0.125, "emerald": 0.5}}})
    c.coretypes = [coretype("emerald")]
    result = doctor.check_gpu_coretypes(c)
    assert result == doctor.warning("translate.gpu_coretypes names coretypes not in the catalogue: gpu-x",
                                    result.fix)


def test_empty_catalogue_fails():
    c = ctx()
    c.coretypes = []
    assert doctor.check_catalogue(c).status == "failed"


# -- spool and state DB --------------------------------------------------------------------------------


def test_spool_with_the_right_layout_is_ok(tmp_path: Path):
    Spool(tmp_path / "spool").ensure()
    assert doctor.check_spool(ctx({"agent": {"spool_dir": str(tmp_path / "spool")}})).status == "ok"


def test_spool_wrong_mode_fails_with_the_chmod(tmp_path: Path):
    Spool(tmp_path).ensure()
    (tmp_path / "incoming").chmod(0o755)
    result = doctor.check_spool(ctx({"agent": {"spool_dir": str(tmp_path)}}))
    assert result.status == "failed"
    assert result.detail == "incoming is 0755, expected 3733"
    assert result.fix == f"chmod 3733 {tmp_path / 'incoming'}"


def test_spool_missing_root_fails_and_missing_subdirs_warn(tmp_path: Path):
    assert doctor.check_spool(ctx({"agent": {"spool_dir": str(tmp_path / "no")}})).status == "failed"
    (tmp_path / "claimed").mkdir(mode=0o700)
    result = doctor.check_spool(ctx({"agent": {"spool_dir": str(tmp_path)}}))
    assert result.status == "warning"
    assert "missing incoming, tmp, failed, results" in result.detail


def test_state_db_made_by_the_store_is_wal_and_writable(tmp_path: Path):
    JobStore(tmp_path / "state.db").close()
    result = doctor.check_state_db(ctx({"agent": {"state_db": str(tmp_path / "state.db")}}))
    assert result.status == "ok"
    assert "WAL" in result.detail and "writable" in result.detail


def test_state_db_absent_is_ok_when_its_directory_is_writable(tmp_path: Path):
    result = doctor.check_state_db(ctx({"agent": {"state_db": str(tmp_path / "state.db")}}))
    assert result == doctor.ok(f"{tmp_path / 'state.db'} absent; the agent creates it at start")
    assert not (tmp_path / "state.db").exists()


def test_state_db_not_wal_warns_and_newer_schema_fails(tmp_path: Path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=1")
    assert doctor.check_state_db(ctx({"agent": {"state_db": str(path)}})).status == "warning"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=999")
    result = doctor.check_state_db(ctx({"agent": {"state_db": str(path)}}))
    assert result.status == "failed"
    assert "newer than this burst-agent" in result.detail


def test_state_db_on_postgres_reports_server_schema_and_writable(postgres_url: str):
    config = {"agent": {"state_db": postgres_url}}
    assert "no schema yet" in doctor.check_state_db(ctx(config)).detail
    open_store(postgres_url).close()
    result = doctor.check_state_db(ctx(config))
    assert result.status == "ok"
    server = pgkit.raw_rows(postgres_url, 'SHOW server_version')[0][0].split()[0]
    assert f"PostgreSQL {server}, schema v{len(MIGRATIONS)}, writable" in result.detail


def test_state_db_on_postgres_warns_of_a_password_in_the_url_and_never_shows_it(postgres_url: str):
    passfile = dict(parse_qsl(urlsplit(postgres_url).query))["passfile"]
    password = Path(passfile).read_text().split(":")[4].strip()
    with_password = postgres_url.replace("burst_test@", f"burst_test:{password}@")
    result = doctor.check_state_db(ctx({"agent": {"state_db": with_password}}))
    assert result.status == "warning" and "holds a password" in result.detail
    assert password not in result.detail + result.fix
    unreachable = doctor.check_state_db(ctx({"agent": {"state_db": f"postgresql://a:{password}@127.0.0.1:1/x"}}))
    assert unreachable.status == "failed" and password not in unreachable.detail


# -- metrics port --------------------------------------------------------------------------------------

IN_USE = OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
AGENT_METRICS = 'burst_agent_build_info{python="3.11.2",version="0.1.0"} 1.0\n'


def test_metrics_port_free_is_ok():
    result = doctor.check_metrics(ctx(bind_error=lambda host, port: None))
    assert result == doctor.ok("127.0.0.1:9464 is free")


def test_metrics_port_served_by_a_running_agent_is_ok():
    urls = []
    c = ctx(bind_error=lambda h, p: IN_USE, http_get=lambda url, t: urls.append(url) or AGENT_METRICS)
    assert doctor.check_metrics(c) == doctor.ok("127.0.0.1:9464 is served by a running burst-agent 0.1.0")
    assert urls == ["http://127.0.0.1:9464/metrics"]


def test_metrics_port_taken_by_another_program_fails():
    c = ctx(bind_error=lambda h, p: IN_USE, http_get=lambda url, t: "<html>grafana</html>")
    result = doctor.check_metrics(c)
    assert result.status == "failed"
    assert "in use by another program" in result.detail
    assert "metrics.listen_port" in result.fix


def test_metrics_disabled_needs_no_port():
    c = ctx({"metrics": {"enabled": False}}, bind_error=lambda h, p: pytest.fail("probed"))
    assert doctor.check_metrics(c).status == "ok"


# -- Slurm ---------------------------------------------------------------------------------------------


def slurm_host(tmp_path: Path, answers: dict[str, Completed], executable: bool = True) -> Host:
    problem = None if executable else ("does not exist", "")
    conf = Completed(0, f"JobSubmitPlugins        = lua\nSLURM_CONF              = {tmp_path}/slurm.conf\n")
    table = {"scontrol show config": conf, **answers}
    return Host(environ={}, which=lambda name: f"/usr/bin/{name}",
                run=lambda argv, timeout: table.get(" ".join(argv), Completed(1, "", "unexpected")),
                others_cannot_run=lambda path: problem)


LUA = 'local BURST_AGENT = "/opt/ba/bin/burst-agent"\nlocal RESCALE_PARTITIONS = "cloud"\n-- burst-agent\n'
PARTITION_UP = {"scontrol show partition cloud": Completed(0, "PartitionName=cloud\n   State=UP\n")}


def slurm_rows(host: Host) -> dict[str, doctor.Result]:
    c = Context(None, host)
    c.config = config_from_mapping({})
    return {name: check(c) for name, check in doctor.checks_for(host) if name.startswith("slurm")}


def test_no_scontrol_gives_one_skipped_row():
    rows = [name for name, _ in doctor.checks_for(Host(which=lambda name: None)) if name.startswith("slurm")]
    assert rows == ["slurm", "slurm cluster"]  # the agent's own Slurm: tests/unit/test_doctor_ha.py
    assert doctor.no_slurm(Context(None)).detail.startswith("skipped: no Slurm on this host")


def test_slurm_checks_read_the_lua_next_to_slurm_conf(tmp_path: Path):
    (tmp_path / "job_submit.lua").write_text(LUA)
    nodes = {"sinfo -p cloud -h -o %T": Completed(0, "idle\nmixed\n")}
    rows = slurm_rows(slurm_host(tmp_path, {**PARTITION_UP, **nodes}))
    rows.pop("slurm core cap")  # its own tests: tests/unit/test_corecap_shell.py
    rows.pop("slurm cluster")  # and tests/unit/test_doctor_ha.py
    assert {r.status for r in rows.values()} == {"ok"}
    assert rows["slurm partition"].detail == "cloud State=UP"
    assert rows["slurm relay"].detail == "/opt/ba/bin/burst-agent is executable by every user"


def test_slurm_missing_lua_and_a_down_node(tmp_path: Path):
    nodes = {"sinfo -p rescale -h -o %T": Completed(0, "idle\ndown\n")}
    up = {"scontrol show partition rescale": Completed(0, "State=UP")}
    rows = slurm_rows(slurm_host(tmp_path, {**up, **nodes}))
    assert rows["slurm job_submit.lua"].status == "failed"
    assert "install -m 0644 deploy/slurm/job_submit.lua" in rows["slurm job_submit.lua"].fix
    assert rows["slurm nodes"] == doctor.warning("1 of 2 proxy nodes up: idle, down", rows["slurm nodes"].fix)
    assert rows["slurm relay"].detail.startswith("skipped")


def test_slurm_without_lua_plugin_partition_or_relay_fails(tmp_path: Path):
    (tmp_path / "job_submit.lua").write_text(LUA)
    no_lua = Completed(0, f"JobSubmitPlugins = (null)\nSLURM_CONF = {tmp_path}/slurm.conf\n")
    rows = slurm_rows(slurm_host(tmp_path, {"scontrol show config": no_lua}, executable=False))
    assert rows["slurm plugin"].status == "failed"
    assert rows["slurm partition"].status == "failed"
    assert rows["slurm nodes"].status == "failed"
    relay = rows["slurm relay"].detail
    assert relay.startswith("/opt/ba/bin/burst-agent (BURST_AGENT in job_submit.lua) does not exist")


# -- the report ----------------------------------------------------------------------------------------


def test_report_puts_a_fix_under_warnings_and_failures_only():
    results = [("a", doctor.ok("fine")), ("bb", doctor.warning("meh", "do x")),
               ("c", doctor.failed("no", "do y"))]
    assert doctor.render_report(results).splitlines() == [
        "CHECK  RESULT   DETAIL",
        "a      ok       fine",
        "bb     warning  meh",
        "                FIX: do x",
        "c      failed   no",
        "                FIX: do y",
    ]
    assert doctor.exit_code(results) == 1
    assert doctor.exit_code(results[:2]) == 0


def test_a_crashing_check_is_a_failed_row_and_the_rest_still_run(monkeypatch):
    def boom(ctx: Context) -> doctor.Result:
        raise RuntimeError("bug")

    monkeypatch.setattr(doctor, "CHECKS", (("boom", boom), ("fine", lambda c: doctor.ok("yes"))))
    results = doctor.run_checks(Context(None, Host(which=lambda name: None)))
    statuses = [(n, r.status) for n, r in results]
    assert statuses[:3] == [("boom", "failed"), ("fine", "ok"), ("relay tcp", "warning")]
    assert [n for n, _ in results][-2:] == ["slurm", "slurm cluster"]
    assert "RuntimeError: bug" in results[0][1].detail


@pytest.mark.parametrize(("value", "status"), [("1", "ok"), ("0", "failed"), (None, "failed")])
def test_hardlink_protection_is_required_by_the_spool_owner_check(value, status):
    context = doctor.Context(config_path=None, host=doctor.Host(read_sysctl=lambda name: value))
    result = doctor.check_hardlinks(context)
    assert result.status == status and (status == "ok" or "protected_hardlinks=1" in result.fix)
