"""Config loading: defaults, key-path errors, ranges, environment overrides."""

from pathlib import Path

import pytest

from burst_agent.config import ConfigError, config_from_mapping, load_config


def test_defaults_load_without_a_file():
    cfg = load_config(None, environ={})
    assert cfg.api.url == "https://platform.rescale.com"
    assert cfg.translate.coretype == "auto"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"translate": {"gpu_coretype": 1}}, "translate.gpu_coretype: unknown key"),
        ({"api": {"read_timeout_s": "x"}}, "api.read_timeout_s: expected a number"),
        ({"api": {"max_retries": 50}}, "api.max_retries: 50 is above the maximum 20"),
        ({"translate": {"rules": [{"gpus": True}]}}, "translate.rules[0].coretype: required key is missing"),
        ({"api": {"platform": "mars"}}, "api.platform: expected one of 'us', 'eu', 'jp'"),
        ({"agent": {"poll_interval_s": 1}}, "agent.poll_interval_s: 1 is below the minimum 5"),
        ({"api": []}, "api: expected a mapping"),
    ],
)
def test_errors_name_the_key_path(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_mapping(data, "site.yaml")


def test_platform_and_base_url():
    assert config_from_mapping({"api": {"platform": "eu"}}).api.url == "https://eu.rescale.com"
    assert config_from_mapping({"api": {"base_url": "http://127.0.0.1:9/"}}).api.url == "http://127.0.0.1:9"


def test_environment_overrides_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  read_timeout_s: 5\n")
    cfg = load_config(path, environ={"BURST_AGENT__API__READ_TIMEOUT_S": "7.5"})
    assert cfg.api.read_timeout_s == 7.5


def test_invalid_yaml_names_file_and_line(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  base_url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line \d+, column \d+ invalid YAML"):
        load_config(path, environ={})
