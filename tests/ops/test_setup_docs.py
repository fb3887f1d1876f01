"""docs/slurm.md "Set up by hand" and .ci/agent-install.sh run the same commands; the paths agree."""

from __future__ import annotations

import re
import textwrap

import yaml
from opstools import REPO

from burst_agent import doctor
from burst_agent.commands.relay import DEFAULT_SPOOL
from burst_agent.config import config_from_mapping

DOC = REPO / "docs" / "slurm.md"
SCRIPT = REPO / ".ci" / "agent-install.sh"
LUA = REPO / "deploy" / "slurm" / "job_submit.lua"
UNIT = REPO / "systemd" / "burst-agent.service"
SECTION = "## Set up by hand (no systemd)\n"
BLOCK = re.compile(r"^( *)```sh\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
REGION = re.compile(r'^# BEGIN docs/slurm.md "Set up by hand \(no systemd\)"\n(.*?)^# END docs/slurm.md$',
                    re.MULTILINE | re.DOTALL)


def doc_blocks() -> list[str]:
    text = DOC.read_text()
    assert text.count(SECTION) == 1, f"{DOC} has no section {SECTION.strip()!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [textwrap.dedent(body) for _, body in BLOCK.findall(section)]


def script_blocks() -> list[str]:
    found = REGION.search(SCRIPT.read_text())
    assert found, f"{SCRIPT} has no BEGIN/END docs/slurm.md region"
    return [block.lstrip("\n") for block in found.group(1).split("# ---\n")]


def test_the_ci_install_script_runs_the_docs_shell_blocks_verbatim_and_in_order():
    blocks = doc_blocks()
    assert len(blocks) >= 4
    assert script_blocks() == blocks


def test_the_documented_config_is_valid_and_uses_the_documented_paths():
    heredoc = next(b for b in doc_blocks() if "config.yaml <<'EOF'" in b)
    config = config_from_mapping(yaml.safe_load(heredoc.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]))
    assert str(config.api.token_file) == "/etc/burst-agent/token"
    assert config.agent.spool_dir == DEFAULT_SPOOL == doctor.RELAY_SPOOL_DEFAULT
    assert str(config.agent.state_db).startswith("/var/lib/burst-agent/")


def test_the_plugin_default_relay_is_the_documented_install():
    settings = doctor.lua_settings(LUA.read_text())
    venv_relay = "/opt/burst-agent/venv/bin/burst-agent"
    assert settings["BURST_AGENT"] == doctor.LUA_BURST_AGENT_DEFAULT == venv_relay
    assert settings["SPOOL_DIR"] is None  # the relay's default spool, the agent's default spool_dir
    assert f"ExecStart={doctor.LUA_BURST_AGENT_DEFAULT} run " in UNIT.read_text()
    assert f'| `BURST_AGENT` | `"{doctor.LUA_BURST_AGENT_DEFAULT}"` |' in DOC.read_text()
