"""deploy/ansible: the playbook parses, lints clean, and its config template renders a valid agent config."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from opstools import REPO

from burst_agent.config import Config, config_from_mapping

ANSIBLE = REPO / "deploy" / "ansible"
ROLE = ANSIBLE / "roles" / "burst_agent"
# Keys of the `metrics` config section this deployment writes (burst_agent.metrics.serve arguments).
METRICS_KEYS = {"listen_host", "listen_port", "per_user_labels"}


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


def test_config_template_renders_a_valid_config(run_tool, ansible_env, tmp_path):
    out = tmp_path / "config.yaml"
    playbook = [{
        "name": "Render the agent config", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml")],
        "tasks": [{"name": "Render", "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "config.yaml.j2"), "dest": str(out), "mode": "0600"}}],
    }]
    (tmp_path / "render.yml").write_text(yaml.safe_dump(playbook))
    site = json.dumps({"burst_agent_projects": {"cfd": "proj-1"}, "burst_agent_organization": "acme"})
    result = run_tool(["ansible-playbook", "-i", "localhost,", "-e", site, str(tmp_path / "render.yml")],
                      env=ansible_env)
    assert result.returncode == 0, result.stdout + result.stderr
    data = yaml.safe_load(out.read_text())
    if "metrics" not in {f.name for f in dataclasses.fields(Config)}:
        assert set(data.pop("metrics")) == METRICS_KEYS  # until config.py grows its metrics section
    config = config_from_mapping(data)
    assert config.api.token_credential == "rescale-token"
    assert config.agent.projects == {"cfd": "proj-1"} and config.agent.organization == "acme"
    assert str(config.agent.state_db) == "/var/lib/burst-agent/state.db"
