"""deploy/ansible lints clean, renders valid configs (one agent, active/standby), refuses bad settings."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from opstools import REPO

from burst_agent.config import Config, config_from_mapping
from burst_agent.doctor import lua_settings
from burst_agent.leadership import EXIT_DEPOSED
from burst_agent.pgurl import PostgresUrl

ANSIBLE = REPO / "deploy" / "ansible"
ROLE = ANSIBLE / "roles" / "burst_agent"
LUA = REPO / "deploy" / "slurm" / "job_submit.lua"
UNIT = REPO / "systemd" / "burst-agent.service"
# Keys of the `metrics` config section this deployment writes (burst_agent.metrics.serve arguments).
METRICS_KEYS = {"listen_host", "listen_port", "per_user_labels"}
# Two agent hosts as active/standby with relays over TCP: what docs/ha.md "Deploying with Ansible" shows.
INVENTORY = "[burst_agents]\nhead1 ansible_connection=local\nhead2 ansible_connection=local\n"
PG_URL = "postgresql://burst@db.example.com:5432/burst?sslmode=verify-full"
PG_PASSWORD = "Pa:ss\\word-7f3c"
HA_VARS = {"burst_agent_state_db": PG_URL, "burst_agent_pg_password": PG_PASSWORD,
           "burst_agent_relay_tcp_listen": "0.0.0.0:7557",
           "burst_agent_shared_spool_dir": "/shared/burst-spool",
           "burst_agent_slurm_conf": "/etc/slurm-multi/slurm.conf"}
LOCALHOST = "localhost ansible_connection=local\n"


@pytest.fixture
def ansible_env(tmp_path) -> dict[str, str]:
    return {"ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0"}


def test_playbook_syntax(run_tool, ansible_env):
    result = run_tool(["ansible-playbook", "--syntax-check", "-i", "localhost,", "deploy/ansible/site.yml"],
                      env=ansible_env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile(run_tool, ansible_env):
    result = run_tool(["ansible-lint", "--offline", "--profile", "production", "site.yml"], cwd=ANSIBLE,
                      env=ansible_env)
    assert result.returncode == 0, result.stdout + result.stderr


def render(run_tool, env: dict[str, str], tmp_path: Path, site: dict[str, Any], templates: list[str],
           inventory: str = LOCALHOST, host: str = "localhost") -> dict[str, str]:
    """The role's templates rendered with its defaults, its vars and `site`, as `host` of `inventory`."""
    tasks = [{"name": f"Render {name}", "ansible.builtin.template": {
        "src": str(ROLE / "templates" / name), "dest": str(tmp_path / name), "mode": "0600"}}
        for name in templates]
    playbook = [{"name": "Render", "hosts": host, "gather_facts": False, "tasks": tasks,
                 "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")]}]
    (tmp_path / "render.yml").write_text(yaml.safe_dump(playbook))
    (tmp_path / "inventory").write_text(inventory)
    site = {"burst_agent_repo_root": str(REPO), **site}
    result = run_tool(["ansible-playbook", "-i", str(tmp_path / "inventory"), "-e", json.dumps(site),
                       str(tmp_path / "render.yml")], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: (tmp_path / name).read_text() for name in templates}


def test_config_template_renders_a_valid_config(run_tool, ansible_env, tmp_path):
    site = {"burst_agent_projects": {"cfd": "proj-1"}, "burst_agent_organization": "acme"}
    data = yaml.safe_load(render(run_tool, ansible_env, tmp_path, site, ["config.yaml.j2"])["config.yaml.j2"])
    if "metrics" not in {f.name for f in dataclasses.fields(Config)}:
        assert set(data.pop("metrics")) == METRICS_KEYS  # until config.py grows its metrics section
    config = config_from_mapping(data)
    assert config.api.token_credential == "rescale-token"
    assert config.agent.projects == {"cfd": "proj-1"} and config.agent.organization == "acme"
    assert str(config.agent.state_db) == "/var/lib/burst-agent/state.db"
    assert config.agent.relay_tcp_listen == "" and config.agent.agent_name == "localhost"


def test_ha_config_names_a_passfile_and_never_holds_the_password(run_tool, ansible_env, tmp_path):
    names = ["config.yaml.j2", "pgpass.j2"]
    out = render(run_tool, ansible_env, tmp_path, HA_VARS, names, INVENTORY, "head2")
    text = out["config.yaml.j2"]
    assert PG_PASSWORD not in text and "word-7f3c" not in text
    data = yaml.safe_load(text)
    data.pop("metrics", None)
    agent = config_from_mapping(data).agent
    assert agent.state_db == PostgresUrl(f"{PG_URL}&passfile=/etc/burst-agent/pgpass")
    assert (agent.relay_tcp_listen, agent.agent_name) == ("0.0.0.0:7557", "head2")
    assert (agent.leader_lease_s, agent.leader_renew_s) == (8, 2)
    assert str(agent.spool_dir) == "/shared/burst-spool"
    assert agent.cluster_name == "head1"  # the same on both agent hosts: part of every job's key
    assert out["pgpass.j2"].splitlines()[-1] == "*:*:*:*:Pa\\:ss\\\\word-7f3c"  # libpq's escapes


def test_ha_relays_find_the_agents_and_the_unit_gets_spool_and_slurm_conf(run_tool, ansible_env, tmp_path):
    names = ["job_submit.lua.j2", "agents.j2", "burst-agent.service.d.conf.j2"]
    out = render(run_tool, ansible_env, tmp_path, HA_VARS, names, INVENTORY, "head1")
    settings = lua_settings(out["job_submit.lua.j2"])
    assert settings["AGENT_ADDRESSES"] == "head1:7557,head2:7557"
    assert settings["SPOOL_DIR"] == "/shared/burst-spool"
    assert {k: v for k, v in settings.items() if k not in ("AGENT_ADDRESSES", "SPOOL_DIR")} == \
        {k: v for k, v in lua_settings(LUA.read_text()).items() if k not in ("AGENT_ADDRESSES", "SPOOL_DIR")}
    assert [line for line in out["agents.j2"].splitlines() if not line.startswith("#")] == \
        ["head1:7557", "head2:7557"]
    dropin = out["burst-agent.service.d.conf.j2"].splitlines()
    assert "Environment=SLURM_CONF=/etc/slurm-multi/slurm.conf" in dropin
    assert dropin[-2:] == ["ReadWritePaths=", "ReadWritePaths=/shared/burst-spool /var/lib/burst-agent"]


def test_one_agent_gets_the_shipped_plugin_unchanged(run_tool, ansible_env, tmp_path):
    out = render(run_tool, ansible_env, tmp_path, {}, ["job_submit.lua.j2", "burst-agent.service.d.conf.j2"])
    assert out["job_submit.lua.j2"] == LUA.read_text()
    assert [line for line in out["burst-agent.service.d.conf.j2"].splitlines()
            if not line.startswith("#")] == ["[Service]"]


def test_an_exact_charge_holds_jobs_for_slurmuser_to_size(run_tool, ansible_env, tmp_path):
    site = {"burst_agent_size_charge": True, "burst_agent_sizer_uid": "64030"}
    lua = render(run_tool, ansible_env, tmp_path, site, ["job_submit.lua.j2"])["job_submit.lua.j2"]
    settings = lua_settings(lua)
    assert (settings["SIZE_CHARGE"], settings["SIZER_UIDS"]) == ("true", "0,64030")
    assert lua_settings(LUA.read_text())["SIZE_CHARGE"] == "false"  # off unless the site runs the sizer


@pytest.mark.parametrize(("site", "message"), [
    ({"burst_agent_state_db": PG_URL}, "set burst_agent_state_db to one postgresql:// URL and "
     "burst_agent_shared_spool_dir"),
    ({**HA_VARS, "burst_agent_state_db": "postgresql://burst:hunter2@db/burst"}, "holds a password"),
    (HA_VARS, ""),  # the positive control: two agent hosts, PostgreSQL, one shared spool
])
def test_the_role_refuses_agents_that_cannot_work(run_tool, ansible_env, tmp_path, site, message):
    playbook = [{"name": "Checks", "hosts": "burst_agents", "gather_facts": False, "tasks": [
        {"name": "Checks", "ansible.builtin.import_role": {"name": "burst_agent", "tasks_from": "checks"}}]}]
    (tmp_path / "checks.yml").write_text(yaml.safe_dump(playbook))
    (tmp_path / "inventory").write_text(INVENTORY)
    env = {**ansible_env, "ANSIBLE_ROLES_PATH": str(ROLE.parent)}
    result = run_tool(["ansible-playbook", "-i", str(tmp_path / "inventory"), "-e", json.dumps(site),
                       str(tmp_path / "checks.yml")], env=env)
    assert (result.returncode != 0) == bool(message), result.stdout
    assert message in " ".join(result.stdout.split()), result.stdout
    assert "hunter2" not in result.stdout + result.stderr


def test_a_deposed_agent_is_restarted_by_systemd():
    """leadership exits EXIT_DEPOSED on stepping down; Restart=on-failure must start it again (standby)."""
    assert EXIT_DEPOSED == 75
    dropin = ROLE / "templates" / "burst-agent.service.d.conf.j2"
    lines = UNIT.read_text().splitlines() + dropin.read_text().splitlines()
    assert "Restart=on-failure" in lines
    prevent = [line for line in lines if line.startswith(("SuccessExitStatus=", "RestartPreventExitStatus="))]
    assert not [line for line in prevent if "75" in line.split("=", 1)[1].split()]


def test_every_documented_variable_is_a_role_variable():
    defined = set(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()))
    ha = (REPO / "docs" / "ha.md").read_text().split("## Deploying with Ansible")[1]
    for text in ((ANSIBLE / "README.md").read_text(), ha):
        documented = set(re.findall(r"\bburst_agent_[a-z_]+\b", text))
        assert documented and documented <= defined, documented - defined
