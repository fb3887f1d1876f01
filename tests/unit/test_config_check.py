"""`burst-agent config check FILE`: validation errors, the effective YAML, overrides and the token source."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from burst_agent import cli
from burst_agent.commands.config import check
from burst_agent.config import config_from_mapping, load_config

SECRET = "s3cret-token-value-42"


def run_check(path: Path, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = check(path, environ or {}, out, err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_output_is_the_effective_config_and_loads_back_equal(tmp_path: Path):
    path = write(tmp_path, "agent:\n  workers: 3\ntranslate:\n  rules:\n    - {coretype: onyx, gpus: true}\n")
    code, out, _ = run_check(path)
    assert code == 0
    data = yaml.safe_load(out)
    assert data["agent"]["workers"] == 3
    assert data["api"]["connect_timeout_s"] == 10.0  # defaults are filled in
    assert config_from_mapping(data) == load_config(path, environ={})


def test_invalid_key_exits_2_naming_file_and_key_path(tmp_path: Path):
    path = write(tmp_path, "staging:\n  download_concurrency: 0\n")
    code, out, err = run_check(path)
    assert code == 2
    assert out == ""
    assert f"{path}: staging.download_concurrency: 0 is below the minimum 1" in err


def test_unreadable_file_exits_2(tmp_path: Path):
    code, _, err = run_check(tmp_path / "missing.yaml")
    assert code == 2
    assert "missing.yaml: cannot read" in err


def test_env_overrides_are_listed_and_applied(tmp_path: Path):
    env = {"BURST_AGENT__METRICS__LISTEN_PORT": "9999"}
    code, out, _ = run_check(write(tmp_path, "{}\n"), env)
    assert code == 0
    assert "# environment override: BURST_AGENT__METRICS__LISTEN_PORT -> metrics.listen_port" in out
    assert yaml.safe_load(out)["metrics"]["listen_port"] == 9999


def test_an_error_from_an_env_override_says_so(tmp_path: Path):
    code, _, err = run_check(write(tmp_path, "{}\n"), {"BURST_AGENT__AGENT__WORKERS": "many"})
    assert code == 2
    assert "agent.workers: expected an integer" in err
    assert "BURST_AGENT__AGENT__WORKERS -> agent.workers" in err


def test_token_file_location_and_mode_without_the_token(tmp_path: Path):
    token = tmp_path / "token"
    token.write_text(SECRET + "\n")
    token.chmod(0o600)
    code, out, _ = run_check(write(tmp_path, f"api:\n  token_file: {token}\n"))
    assert code == 0
    assert f"# token: found in file {token} (mode 0600)" in out
    assert SECRET not in out


def test_token_not_found_says_why(tmp_path: Path):
    code, out, _ = run_check(write(tmp_path, "api:\n  token_env: MY_TOKEN\n"))
    assert code == 0
    assert "# token: not found: no API token:" in out
    assert "MY_TOKEN" in out


def test_cli_dispatches_config_check(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("RESCALE_API_TOKEN", SECRET)
    assert cli.main(["config", "check", str(write(tmp_path, "agent:\n  workers: 2\n"))]) == 0
    out = capsys.readouterr().out
    assert "# token: found in environment variable RESCALE_API_TOKEN" in out
    assert SECRET not in out
